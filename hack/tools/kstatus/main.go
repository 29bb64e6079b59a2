// Command kstatus prints what the kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status),
// which Flux's `wait: true` and health checks use, computes for Kubernetes objects.
//
// Input on stdin: one JSON object, or a JSON array of objects. Output on stdout: one JSON
// array with, per object, {"name", "generation", "status", "message"}. aigate's tests feed
// it live AIDeployments read from the API server, so the documented Flux behaviour is
// measured with the real library, not re-implemented.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Name       string `json:"name"`
	Generation int64  `json:"generation"`
	Status     string `json:"status"`
	Message    string `json:"message"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	// apimachinery's decoder keeps integers as int64, as the API machinery (and Flux) sees
	// them; encoding/json would make metadata.generation a float64.
	var objects []map[string]interface{}
	if err := utiljson.Unmarshal(raw, &objects); err != nil {
		var single map[string]interface{}
		if err2 := utiljson.Unmarshal(raw, &single); err2 != nil {
			fail("stdin is neither a JSON object nor an array of objects: %v", err2)
		}
		objects = []map[string]interface{}{single}
	}
	results := make([]result, 0, len(objects))
	for _, object := range objects {
		u := &unstructured.Unstructured{Object: object}
		computed, err := status.Compute(u)
		if err != nil {
			fail("%s: %v", u.GetName(), err)
		}
		results = append(results, result{
			Name:       u.GetName(),
			Generation: u.GetGeneration(),
			Status:     computed.Status.String(),
			Message:    computed.Message,
		})
	}
	out, err := json.Marshal(results)
	if err != nil {
		fail("encoding: %v", err)
	}
	fmt.Println(string(out))
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}

// Command kstatus prints what Flux would conclude about Kubernetes objects: the kstatus
// library's status (sigs.k8s.io/cli-utils/pkg/kstatus/status, what `wait: true` uses for a
// custom resource without custom health checks) and, optionally, the verdict of Flux's own
// CEL evaluator (github.com/fluxcd/pkg/runtime/cel, what a Kustomization's
// `healthCheckExprs` uses) for named sets of expressions.
//
//	kstatus [-exprs '{"name": {"current": "...", "inProgress": "...", "failed": "..."}}'] < objects.json
//
// Input on stdin: one JSON object, or a JSON array of objects. Output on stdout: a JSON
// array with, per object, {"name", "generation", "status", "message", "exprs": {name: status}}
// (an evaluation error is reported as "Error: ..."). aigate's tests feed it live
// AIDeployments read from the API server, so the documented Flux behaviour is measured with
// the real libraries, not re-implemented.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/fluxcd/pkg/apis/kustomize"
	fluxcel "github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Name       string            `json:"name"`
	Generation int64             `json:"generation"`
	Status     string            `json:"status"`
	Message    string            `json:"message"`
	Exprs      map[string]string `json:"exprs,omitempty"`
}

func main() {
	exprsFlag := flag.String("exprs", "", "JSON object: name -> {current, inProgress, failed}")
	flag.Parse()

	evaluators := map[string]*fluxcel.StatusEvaluator{}
	if *exprsFlag != "" {
		var sets map[string]kustomize.HealthCheckExpressions
		if err := json.Unmarshal([]byte(*exprsFlag), &sets); err != nil {
			fail("-exprs: %v", err)
		}
		for name, set := range sets {
			set := set
			evaluator, err := fluxcel.NewStatusEvaluator(&set)
			if err != nil {
				fail("-exprs %s: %v", name, err)
			}
			evaluators[name] = evaluator
		}
	}

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

	names := make([]string, 0, len(evaluators))
	for name := range evaluators {
		names = append(names, name)
	}
	sort.Strings(names)

	results := make([]result, 0, len(objects))
	for _, object := range objects {
		u := &unstructured.Unstructured{Object: object}
		computed, err := status.Compute(u)
		if err != nil {
			fail("%s: %v", u.GetName(), err)
		}
		r := result{
			Name:       u.GetName(),
			Generation: u.GetGeneration(),
			Status:     computed.Status.String(),
			Message:    computed.Message,
		}
		if len(names) > 0 {
			r.Exprs = map[string]string{}
			for _, name := range names {
				verdict, err := evaluators[name].Evaluate(context.Background(), u)
				if err != nil {
					r.Exprs[name] = "Error: " + err.Error()
				} else {
					r.Exprs[name] = verdict.Status.String()
				}
			}
		}
		results = append(results, r)
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

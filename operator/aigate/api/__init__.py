"""The AIDeployment resource: its pydantic models are the single source of the CRD schema."""

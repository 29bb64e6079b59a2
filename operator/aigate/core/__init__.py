"""Pure decision logic: standard library and aigate.api only (enforced by import-linter)."""

"""Manifests: files → validated desired state (model, loader, variables, offline checks)."""

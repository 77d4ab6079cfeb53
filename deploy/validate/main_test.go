package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestShippedManifests validates every manifest in deploy/k8s.
func TestShippedManifests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "k8s", "*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("manifests: %v %v", files, err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(raw); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestRejects: a typo, a wrong type, an unknown kind and a missing name are each refused
// with an error that says what is wrong.
func TestRejects(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 3\n"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: three\n"},
		{"probe typo", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: b\n          readinesProbe: {}\n"},
		{"unknown kind", "apiVersion: v1\nkind: Servce\nmetadata: {name: x}\n"},
		{"no name", "apiVersion: v1\nkind: Service\nmetadata: {}\n"},
		{"second document bad", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {maxUnavailabel: 1}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := validate([]byte(tt.doc)); err == nil {
				t.Fatal("accepted")
			} else {
				t.Log(err)
			}
		})
	}
}

// TestDockerfile: the shipped Dockerfile parses as BuildKit parses it; a misspelt flag or
// instruction does not.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := validateDockerfile(raw); err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for name, bad := range map[string]string{
		"misspelt flag":       "FROM docker.io/library/golang:1.26\nHEALTHCHECK --intervall=3s CMD [\"x\"]\n",
		"unknown instruction": "FROM docker.io/library/golang:1.26\nRUNN echo hi\n",
		"no stage":            "# nothing\n",
		"copy flag misspelt":  "FROM docker.io/library/golang:1.26\nCOPY --chwn=1 a b\n",
	} {
		if err := validateDockerfile([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

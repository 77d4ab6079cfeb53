// Command validate checks the deployment files offline, where no container engine or cluster
// runs:
//
//   - Kubernetes manifests: each document is decoded strictly (unknown or duplicate fields and
//     wrong types are errors) into the real API types of k8s.io/api, for the kinds callbrain
//     ships. kubeconform does the same against JSON schemas but needs the network to fetch
//     them; this runs anywhere the Go module proxy does.
//   - Dockerfiles (-dockerfile): parsed by BuildKit's own Dockerfile parser, so a misspelt
//     instruction or flag fails here as it would in `docker build` or `podman build`.
//
// It is a module of its own so the brain's go.mod carries neither k8s.io/api nor BuildKit.
//
//	go run . ../k8s/*.yaml
//	go run . -dockerfile ../../Dockerfile
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	check, files := validate, os.Args[1:]
	if len(files) > 0 && files[0] == "-dockerfile" {
		check, files = validateDockerfile, files[1:]
	}
	failed := false
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err == nil {
			err = check(raw)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", f, err)
			failed = true
			continue
		}
		fmt.Printf("%s: valid\n", f)
	}
	if failed || len(files) == 0 {
		os.Exit(1)
	}
}

// kinds maps apiVersion/kind to a fresh value of its type; a kind not listed is an error.
var kinds = map[string]func() any{
	"apps/v1/Deployment":                            func() any { return &appsv1.Deployment{} },
	"v1/Service":                                    func() any { return &corev1.Service{} },
	"v1/ConfigMap":                                  func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                     func() any { return &corev1.Secret{} },
	"policy/v1/PodDisruptionBudget":                 func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":        func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"kustomize.config.k8s.io/v1beta1/Kustomization": nil, // not an API object: checked for shape only
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// validate checks every document of one file.
func validate(raw []byte) error {
	var errs []error
	for i, doc := range docSep.Split(string(raw), -1) {
		if len(bytes.TrimSpace([]byte(doc))) == 0 {
			continue
		}
		if err := validateDoc([]byte(doc)); err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i+1, err))
		}
	}
	return errors.Join(errs...)
}

func validateDoc(doc []byte) error {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return fmt.Errorf("not YAML: %w", err)
	}
	key := tm.APIVersion + "/" + tm.Kind
	mk, ok := kinds[key]
	if !ok {
		return fmt.Errorf("apiVersion %q kind %q: not a kind this checker knows", tm.APIVersion, tm.Kind)
	}
	if mk == nil {
		return nil
	}
	if tm.Metadata.Name == "" {
		return fmt.Errorf("%s: metadata.name is required", tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, mk()); err != nil {
		return fmt.Errorf("%s %s: %w", tm.Kind, tm.Metadata.Name, err)
	}
	return nil
}

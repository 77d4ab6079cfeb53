package main

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// validateDockerfile parses a Dockerfile as BuildKit does, instructions and their flags
// included, and refuses one with parser warnings (an empty continuation line, …) or without
// a stage.
func validateDockerfile(raw []byte) error {
	res, err := parser.Parse(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	var errs []error
	for _, w := range res.Warnings {
		errs = append(errs, fmt.Errorf("warning: %s", w.Short))
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return err
	}
	if len(stages) == 0 {
		errs = append(errs, errors.New("no FROM: not a build"))
	}
	return errors.Join(errs...)
}

package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// sensitiveMark marks cty values that come from secret sources.
type sensitiveMark struct{}

var sensitive = sensitiveMark{}

// functions returns the functions available in configuration expressions.
// With noSecrets, env() of an unset variable is an unknown value instead of
// an error (see LoadOptions.NoSecrets).
func functions(dir string, getenv func(string) string, noSecrets bool) map[string]function.Function {
	fns := map[string]function.Function{
		"env": function.New(&function.Spec{
			Description: "Reads an environment variable; an error when it is unset or empty.",
			Params:      []function.Parameter{{Name: "name", Type: cty.String}},
			Type:        function.StaticReturnType(cty.String),
			RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder {
				return b.NotNull()
			},
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				name := args[0].AsString()
				v := getenv(name)
				if v == "" && noSecrets {
					return cty.UnknownVal(cty.String).Mark(sensitive), nil
				}
				if v == "" {
					return cty.UnknownVal(cty.String), fmt.Errorf("environment variable %s is not set", name)
				}
				return cty.StringVal(v).Mark(sensitive), nil
			},
		}),
		"file": function.New(&function.Spec{
			Description: "Reads a file, relative to the configuration directory; its content is sensitive.",
			Params:      []function.Parameter{{Name: "path", Type: cty.String}},
			Type:        function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				p := expandHome(args[0].AsString())
				if !filepath.IsAbs(p) {
					p = filepath.Join(dir, p)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return cty.UnknownVal(cty.String), fmt.Errorf("read %s: %w", p, unwrapPathError(err))
				}
				return cty.StringVal(strings.TrimRight(string(b), "\r\n")).Mark(sensitive), nil
			},
		}),
		"upper":      stdlib.UpperFunc,
		"lower":      stdlib.LowerFunc,
		"trimspace":  stdlib.TrimSpaceFunc,
		"join":       stdlib.JoinFunc,
		"split":      stdlib.SplitFunc,
		"replace":    stdlib.ReplaceFunc,
		"format":     stdlib.FormatFunc,
		"formatlist": stdlib.FormatListFunc,
		"concat":     stdlib.ConcatFunc,
		"coalesce":   stdlib.CoalesceFunc,
		"length":     stdlib.LengthFunc,
		"distinct":   stdlib.DistinctFunc,
		"flatten":    stdlib.FlattenFunc,
		"tostring":   stdlib.MakeToFunc(cty.String),
		"tonumber":   stdlib.MakeToFunc(cty.Number),
		"tolist":     stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"min":        stdlib.MinFunc,
		"max":        stdlib.MaxFunc,
	}
	return fns
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

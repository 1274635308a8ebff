package main

import (
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The JSON documents of docs/json.md, each compared with a golden file of
// testdata/json/ (go test -update rewrites them). Documents whose values
// depend on the machine or the clock (preflight, serve status) are
// compared by their skeleton: every key path with its JSON type.

// jsonSkeleton lists "path: type" for every value of a JSON document;
// the elements of an array share the path "[]" and their keys are merged.
func jsonSkeleton(t *testing.T, doc []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	seen := map[string]bool{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			seen[path+": object"] = true
			for k, e := range x {
				walk(path+"."+k, e)
			}
		case []any:
			seen[path+": array"] = true
			for _, e := range x {
				walk(path+"[]", e)
			}
		case string:
			seen[path+": string"] = true
		case float64:
			seen[path+": number"] = true
		case bool:
			seen[path+": boolean"] = true
		case nil:
			seen[path+": null"] = true
		}
	}
	walk("$", v)
	lines := make([]string, 0, len(seen))
	for l := range seen {
		lines = append(lines, l)
	}
	// By path, then type: a parent before its children.
	sort.Slice(lines, func(i, j int) bool {
		pi, ti, _ := strings.Cut(lines[i], ": ")
		pj, tj, _ := strings.Cut(lines[j], ": ")
		if pi != pj {
			return pi < pj
		}
		return ti < tj
	})
	return []byte(strings.Join(lines, "\n") + "\n")
}

// TestJSONGolden runs the commands whose -json output is machine
// independent and compares it with the golden files.
func TestJSONGolden(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := labConfig + `user "alice@example.org" {
  password_hash = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$5yq2Vt0Jc6QFd6nOgxwtWkl3e1gGugcqo8xiP0WDJwQ"
}
`
	writeFile(t, filepath.Join(dir, "mail.hcl"), conf, 0o644)
	planFile := filepath.Join(dir, "saved.mailplan")
	e, out, errb := testEnv(dir)
	if code := runCLI(t, e, "plan", "-json", "-refresh=false", "-out", planFile); code != 0 {
		t.Fatalf("plan -json = %d\n%s", code, errb)
	}
	golden(t, "json/plan.json", out.Bytes())

	e, out, errb = testEnv(dir)
	if code := runCLI(t, e, "show", "-json", planFile); code != 0 {
		t.Fatalf("show -json = %d\n%s", code, errb)
	}
	golden(t, "json/show.json", out.Bytes())

	// verify of what needs no network: the addresses postmaster@ and abuse@.
	e, out, errb = testEnv(dir)
	if code := runCLI(t, e, "verify", "-json", "-servers=false", "-dnsbl=none", "addresses"); code != 2 {
		t.Fatalf("verify -json addresses = %d, want 2 (no postmaster@)\n%s%s", code, out, errb)
	}
	golden(t, "json/verify.json", out.Bytes())

	// validate: a valid configuration, then one error and one warning.
	e, out, _ = testEnv(dir)
	if code := runCLI(t, e, "validate", "-json"); code != 0 {
		t.Fatalf("validate -json = %d\n%s", code, out)
	}
	golden(t, "json/validate-valid.json", out.Bytes())
	bad := strings.NewReplacer(`"203.0.113.10"`, `"10.0.0.10"`, `"admin@example.org"`, `"admin"`).Replace(conf)
	writeFile(t, filepath.Join(dir, "mail.hcl"), bad, 0o644)
	e, out, _ = testEnv(dir)
	if code := runCLI(t, e, "validate", "-json"); code != 1 {
		t.Fatalf("validate -json of an invalid configuration = %d\n%s", code, out)
	}
	golden(t, "json/validate-invalid.json", stripDir(out.String(), dir))
}

// goldenSkeleton compares the skeleton of doc with testdata/<path>.
func goldenSkeleton(t *testing.T, path string, doc []byte) {
	t.Helper()
	golden(t, path, jsonSkeleton(t, doc))
}

func TestJSONSkeleton(t *testing.T) {
	got := string(jsonSkeleton(t, []byte(`{"a":[{"b":1},{"c":"x"}],"d":null,"e":true}`)))
	want := `$: object
$.a: array
$.a[]: object
$.a[].b: number
$.a[].c: string
$.d: null
$.e: boolean
`
	if got != want {
		t.Errorf("skeleton:\n%s\nwant:\n%s", got, want)
	}
}

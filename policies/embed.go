// Package policies carries the built-in Rego pack, its data and the facts schema into the binaries.
// It holds files only: evaluation lives in agent/engine, the facts types in device.
package policies

import (
	"embed"
	"io/fs"
	"strings"
)

// SchemaJSON is policies/facts.schema.json, the facts v1 contract (DESIGN §4).
//
//go:embed facts.schema.json
var SchemaJSON []byte

//go:embed data.json faceguard
var pack embed.FS

// Pack returns the built-in pack laid out like an OPA bundle: data.json at the root and the policy modules
// under faceguard/, without the tests.
func Pack() fs.FS { return PolicyFiles(pack) }

// PolicyFiles shows only what belongs in a policy bundle: Rego modules that are not tests, and data.json
// files. Tests, READMEs and the schema of a source tree stay out.
func PolicyFiles(tree fs.FS) fs.FS { return policyFiles{tree} }

// IsPolicyFile reports whether a file name belongs in a policy bundle.
func IsPolicyFile(name string) bool {
	base := name[strings.LastIndex(name, "/")+1:]
	if strings.HasSuffix(base, "_test.rego") {
		return false
	}
	return strings.HasSuffix(base, ".rego") || base == "data.json"
}

type policyFiles struct{ fs.FS }

func (p policyFiles) Open(name string) (fs.File, error) {
	f, err := p.FS.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.IsDir() && !IsPolicyFile(name) {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return f, nil
}

func (p policyFiles) ReadDir(name string) ([]fs.DirEntry, error) {
	all, err := fs.ReadDir(p.FS, name)
	if err != nil {
		return nil, err
	}
	var out []fs.DirEntry
	for _, e := range all {
		if e.IsDir() || IsPolicyFile(e.Name()) {
			out = append(out, e)
		}
	}
	return out, nil
}

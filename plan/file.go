package plan

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// fileMagic marks a saved plan file.
const fileMagic = "mailctl-plan"

type file struct {
	Magic string `json:"magic"`
	Plan  *Plan  `json:"plan"`
}

// Save writes p to path (mode 0600: a plan may hold configuration details
// that are not for everyone), atomically.
func Save(path string, p *Plan) error {
	b, err := json.MarshalIndent(file{Magic: fileMagic, Plan: p}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode plan: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".plan-*")
	if err != nil {
		return fmt.Errorf("save plan %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save plan %s: %w", path, err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save plan %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save plan %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save plan %s: %w", path, err)
	}
	return nil
}

// Load reads a plan written by Save.
func Load(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil || f.Magic != fileMagic || f.Plan == nil {
		return nil, fmt.Errorf("read plan %s: not a mailctl plan file", path)
	}
	if f.Plan.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("read plan %s: format %s, this mailctl reads %s", path, f.Plan.FormatVersion, FormatVersion)
	}
	return f.Plan, nil
}

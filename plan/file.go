package plan

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mailctl/mailctl/internal/atomicfile"
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
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save plan: %w", err)
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

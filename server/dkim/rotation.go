package dkim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mailctl/mailctl/contract"
)

// Rotation state. A domain's keys follow its configured selectors until
// its first rotation; from then on <dir>/<domain>/rotation.json records
// every selector the rotations made, its state and when it changed, and
// decides which one signs:
//
//	pending  generated, published by the provisioner, not yet signing
//	signing  signs outbound mail (one per domain)
//	retired  published only, so that mail it signed still verifies
//	removed  unpublished; its key files are deleted
//
// The history belongs to the configured signing selector it started from:
// a configuration that names another signing selector (a manual rotation)
// starts over, and the file is ignored.

// Key states (Key.State), those of the contract with the provisioner.
const (
	StatePending   = contract.DKIMStatePending
	StateSigning   = contract.DKIMStateSigning
	StateRetired   = contract.DKIMStateRetired
	StateRemoved   = contract.DKIMStateRemoved
	StatePublished = contract.DKIMStatePublished
)

// Entry is one selector of a domain's rotation history.
type Entry struct {
	Base      string    `json:"base"`
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
	Activated time.Time `json:"activated,omitzero"`
	Retired   time.Time `json:"retired,omitzero"`
	Removed   time.Time `json:"removed,omitzero"`
}

type rotationFile struct {
	// Config is the configured signing selector the history started from.
	Config  string  `json:"config"`
	Entries []Entry `json:"selectors"`
}

func rotationPath(dir, domain string) string {
	return filepath.Join(dir, domain, "rotation.json")
}

// loadRotation returns the domain's rotation history, nil when it has none
// or when it started from another configured selector than bases[0].
func loadRotation(dir, domain string, bases []string) (*rotationFile, error) {
	b, err := os.ReadFile(rotationPath(dir, domain))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dkim rotation state: %w", err)
	}
	var r rotationFile
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read dkim rotation state %q: %w", rotationPath(dir, domain), err)
	}
	if len(bases) == 0 || r.Config != bases[0] {
		return nil, nil
	}
	return &r, nil
}

func saveRotation(dir, domain string, r *rotationFile) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode dkim rotation state: %w", err)
	}
	p := rotationPath(dir, domain)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save dkim rotation state: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save dkim rotation state %q: %w", p, err)
	}
	if d, err := os.Open(filepath.Dir(p)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// find returns the entry of base, or nil.
// find returns the entry of base, nil when there is none (or no history).
func (r *rotationFile) find(base string) *Entry {
	if r == nil {
		return nil
	}
	for i := range r.Entries {
		if r.Entries[i].Base == base {
			return &r.Entries[i]
		}
	}
	return nil
}

func (r *rotationFile) inState(state string) *Entry {
	for i := range r.Entries {
		if r.Entries[i].State == state {
			return &r.Entries[i]
		}
	}
	return nil
}

// DomainKeys loads (generating the missing ones) the keys of a domain
// whose configured selectors are bases (the first signs), following its
// rotation history when it has one.
func DomainKeys(dir, domain string, bases []string) ([]Key, error) {
	domain = strings.ToLower(domain)
	if err := checkName("domain", domain); err != nil {
		return nil, err
	}
	rot, err := loadRotation(dir, domain, bases)
	if err != nil {
		return nil, err
	}
	if rot == nil {
		return Ensure(dir, domain, bases)
	}
	var keys []Key
	seen := map[string]bool{}
	for _, state := range []string{StateSigning, StatePending, StateRetired} {
		for _, e := range rot.Entries {
			if e.State != state {
				continue
			}
			seen[e.Base] = true
			ks, err := ensureBase(dir, domain, e.Base)
			if err != nil {
				return nil, err
			}
			for i := range ks {
				ks[i].State, ks[i].Signing, ks[i].Created, ks[i].Retired = e.State, e.State == StateSigning, e.Created, e.Retired
			}
			keys = append(keys, ks...)
		}
	}
	for _, e := range rot.Entries {
		seen[e.Base] = true // removed ones are not generated again
	}
	for _, b := range bases[1:] {
		if seen[b] {
			continue
		}
		ks, err := ensureBase(dir, domain, b)
		if err != nil {
			return nil, err
		}
		for i := range ks {
			ks[i].State = StatePublished
		}
		keys = append(keys, ks...)
	}
	return keys, nil
}

// Rotate starts a rotation of domain (configured selectors bases) to the
// new base selector next: its keys are generated and it is recorded as
// pending, published but not signing until Activate. Starting the same
// rotation again does nothing; another one while one is pending is an
// error.
func Rotate(dir, domain string, bases []string, next string, now time.Time) error {
	domain = strings.ToLower(domain)
	if len(bases) == 0 {
		return fmt.Errorf("dkim rotate %s: the domain has no DKIM selector", domain)
	}
	if !selectorLabel.MatchString(next) || len(next)+len("-ed25519") > 63 {
		return fmt.Errorf("dkim rotate %s: %q is not a selector (letters, digits and inner hyphens, at most 55 characters)", domain, next)
	}
	rot, err := loadRotation(dir, domain, bases)
	if err != nil {
		return err
	}
	if rot == nil {
		created := now
		if fi, err := os.Stat(filepath.Join(dir, domain, Selectors(bases[0])[0].Name+".pem")); err == nil {
			created = fi.ModTime().UTC()
		}
		rot = &rotationFile{Config: bases[0], Entries: []Entry{{Base: bases[0], State: StateSigning, Created: created}}}
	}
	if p := rot.inState(StatePending); p != nil {
		if p.Base == next {
			return nil
		}
		return fmt.Errorf("dkim rotate %s: the rotation to selector %s is under way; run mailctl apply to finish it first", domain, p.Base)
	}
	for _, b := range bases {
		if b == next {
			return fmt.Errorf("dkim rotate %s: selector %s is already configured", domain, next)
		}
	}
	if rot.find(next) != nil {
		return fmt.Errorf("dkim rotate %s: selector %s was used before", domain, next)
	}
	if _, err := ensureBase(dir, domain, next); err != nil {
		return err
	}
	rot.Entries = append(rot.Entries, Entry{Base: next, State: StatePending, Created: now.UTC()})
	return saveRotation(dir, domain, rot)
}

// Activate switches the signing of domain to its pending selector base;
// the selector that signed until then is retired (still published).
// Activating the signing selector again does nothing.
func Activate(dir, domain string, bases []string, base string, now time.Time) error {
	domain = strings.ToLower(domain)
	rot, err := loadRotation(dir, domain, bases)
	if err != nil {
		return err
	}
	e := rot.find(base)
	if e == nil {
		return fmt.Errorf("dkim activate %s: no rotation to selector %s (start one with mailctl dkim rotate)", domain, base)
	}
	switch e.State {
	case StateSigning:
		return nil
	case StatePending:
	default:
		return fmt.Errorf("dkim activate %s: selector %s is %s, not pending", domain, base, e.State)
	}
	if old := rot.inState(StateSigning); old != nil {
		old.State, old.Retired = StateRetired, now.UTC()
	}
	e.State, e.Activated = StateSigning, now.UTC()
	return saveRotation(dir, domain, rot)
}

// Remove deletes the keys of a retired selector base of domain, once the
// provisioner has unpublished it. Removing it again does nothing.
func Remove(dir, domain string, bases []string, base string, now time.Time) error {
	domain = strings.ToLower(domain)
	rot, err := loadRotation(dir, domain, bases)
	if err != nil {
		return err
	}
	e := rot.find(base)
	if e == nil {
		return fmt.Errorf("dkim remove %s: selector %s is not in the rotation history", domain, base)
	}
	switch e.State {
	case StateRemoved:
		return nil
	case StateRetired:
	default:
		return fmt.Errorf("dkim remove %s: selector %s is %s, not retired", domain, base, e.State)
	}
	for _, sel := range Selectors(base) {
		p := filepath.Join(dir, domain, sel.Name+".pem")
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("dkim remove %s: %w", domain, err)
		}
	}
	e.State, e.Removed = StateRemoved, now.UTC()
	return saveRotation(dir, domain, rot)
}

// selectorLabel is a base selector: a DNS label once -ed25519 or -rsa is
// appended.
var selectorLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$`)

func checkName(what, s string) error {
	if s == "" || strings.ContainsAny(s, "/\\") || strings.HasPrefix(s, ".") {
		return fmt.Errorf("dkim: invalid %s %q", what, s)
	}
	return nil
}

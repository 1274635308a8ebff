package auth

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// User is what auth needs of a configured user (server/config converts).
type User struct {
	Address      string
	PasswordHash string
	// Aliases are extra addresses delivered to this user and usable as sender.
	Aliases    []string
	QuotaBytes int64
	// PasswordScopes restricts the main password to these scopes (Scopes);
	// nil allows every scope, an empty non-nil list none (only app
	// passwords log in).
	PasswordScopes []string
	// AppPasswords are the user's per-device passwords.
	AppPasswords []AppPassword
}

// Alias maps Address ("user@domain", or "@domain" for a catch-all) to local
// or remote addresses.
type Alias struct {
	Address string
	To      []string
}

var (
	// ErrNotLocal says the address's domain is not served here.
	ErrNotLocal = errors.New("auth: domain not served here")
	// ErrUnknownRecipient says the domain is local but nothing delivers the address.
	ErrUnknownRecipient = errors.New("auth: no such local recipient")
)

// maxExpansionDepth bounds alias chains (config validation refuses loops;
// this guards against them anyway).
const maxExpansionDepth = 16

// Resolution is where a local address delivers.
type Resolution struct {
	// Users are canonical user addresses (mailbox owners), sorted, unique.
	Users []string
	// Remote are addresses outside the local domains (alias forwarding), sorted, unique.
	Remote []string
}

// Directory answers address questions for SMTP: is an address local, which
// mailboxes does it deliver to, and may a user send as it. It is safe for
// concurrent use and replaced atomically by Update on config reload.
type Directory struct {
	mu     sync.RWMutex
	d      *dirData
	delims *string // nil: DefaultRecipientDelimiter
}

type dirData struct {
	domains map[string]bool
	// users maps every user address and user alias to its canonical user address.
	users map[string]string
	// primary holds canonical user addresses.
	primary map[string]bool
	quota   map[string]int64
	// aliases maps an alias address or "@domain" to its targets.
	aliases map[string][]string
}

// NewDirectory builds a directory; see Update.
func NewDirectory(domains []string, users []User, aliases []Alias) (*Directory, error) {
	d := &Directory{}
	if err := d.Update(domains, users, aliases); err != nil {
		return nil, err
	}
	return d, nil
}

// Update replaces the directory's contents. On error the old contents stay.
// The configuration is expected to be validated already (server/config);
// Update only refuses what it cannot represent.
func (d *Directory) Update(domains []string, users []User, aliases []Alias) error {
	n := &dirData{
		domains: map[string]bool{},
		users:   map[string]string{},
		primary: map[string]bool{},
		quota:   map[string]int64{},
		aliases: map[string][]string{},
	}
	var errs []error
	for _, dom := range domains {
		dn, err := ParseDomain(dom)
		if err != nil {
			errs = append(errs, fmt.Errorf("domain %q: %w", dom, err))
			continue
		}
		n.domains[dn] = true
	}
	for _, u := range users {
		a, err := ParseAddress(u.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("user: %w", err))
			continue
		}
		canon := a.String()
		n.primary[canon] = true
		n.quota[canon] = u.QuotaBytes
		for _, s := range append([]string{u.Address}, u.Aliases...) {
			al, err := ParseAddress(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("user %s alias: %w", canon, err))
				continue
			}
			if prev, ok := n.users[al.String()]; ok && prev != canon {
				errs = append(errs, fmt.Errorf("address %s belongs to %s and %s", al, prev, canon))
				continue
			}
			n.users[al.String()] = canon
		}
	}
	for _, al := range aliases {
		p, err := ParsePattern(al.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("alias: %w", err))
			continue
		}
		key := p.String()
		var to []string
		for _, t := range al.To {
			ta, err := ParseAddress(t)
			if err != nil {
				errs = append(errs, fmt.Errorf("alias %s target: %w", key, err))
				continue
			}
			to = append(to, ta.String())
		}
		n.aliases[key] = append(n.aliases[key], to...)
	}
	if len(errs) > 0 {
		return fmt.Errorf("build directory: %w", errors.Join(errs...))
	}
	d.mu.Lock()
	d.d = n
	d.mu.Unlock()
	return nil
}

func (d *Directory) data() *dirData {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.d
}

// IsLocalDomain reports whether mail for domain is delivered here.
func (d *Directory) IsLocalDomain(domain string) bool {
	return d.data().domains[strings.ToLower(domain)]
}

// Quota returns the quota in bytes of a canonical user (0: unlimited).
func (d *Directory) Quota(user string) int64 {
	return d.data().quota[strings.ToLower(user)]
}

// Resolve says where addr delivers: exact user address or user alias, then
// alias blocks, then the same with a "+detail" removed (alice+lists@ is
// alice@; the part from the first delimiter character on, see
// SetRecipientDelimiter), then the domain's "@domain" catch-all. Alias chains are expanded.
// It returns ErrNotLocal (wrapped) for a domain not served here,
// ErrUnknownRecipient for a local domain with nothing matching, and
// ErrBadAddress for an address ParseAddress refuses.
func (d *Directory) Resolve(addr string) (Resolution, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return Resolution{}, err
	}
	dd := d.data()
	if !dd.domains[a.Domain] {
		return Resolution{}, fmt.Errorf("%w: %s", ErrNotLocal, a.Domain)
	}
	users, remote := map[string]bool{}, map[string]bool{}
	x := expansion{dirData: dd, delims: d.RecipientDelimiter()}
	if !x.expand(a, 0, map[string]bool{}, users, remote) {
		return Resolution{}, fmt.Errorf("%w: %s", ErrUnknownRecipient, a)
	}
	return Resolution{Users: sortedKeys(users), Remote: sortedKeys(remote)}, nil
}

// ResolvePostmaster says where the bare "Postmaster" recipient (RFC 5321
// section 4.5.1: a server MUST accept it without a domain) delivers: the
// postmaster of hostname's own domain when served here (hostname, then its
// parents: mail.example.org, example.org), else of the first local domain
// (sorted) that has one. It returns the address used, or
// ErrUnknownRecipient when no local domain has a postmaster.
func (d *Directory) ResolvePostmaster(hostname string) (string, Resolution, error) {
	dd := d.data()
	var cands []string
	for h := strings.ToLower(strings.TrimSuffix(hostname, ".")); h != ""; {
		if dd.domains[h] {
			cands = append(cands, h)
		}
		_, rest, ok := strings.Cut(h, ".")
		if !ok {
			break
		}
		h = rest
	}
	cands = append(cands, sortedKeys(dd.domains)...)
	for _, dom := range cands {
		addr := "postmaster@" + dom
		if res, err := d.Resolve(addr); err == nil {
			return addr, res, nil
		}
	}
	return "", Resolution{}, fmt.Errorf("%w: postmaster of %s", ErrUnknownRecipient, hostname)
}

// expansion is one Resolve's view of the directory and delimiter.
type expansion struct {
	*dirData
	delims string
}

// expand adds what a delivers to and reports whether anything matched.
func (dd expansion) expand(a Address, depth int, seen, users, remote map[string]bool) bool {
	key := a.String()
	if seen[key] || depth > maxExpansionDepth {
		return false
	}
	seen[key] = true
	if !dd.domains[a.Domain] {
		remote[key] = true
		return true
	}
	if dd.expandExact(a, depth, seen, users, remote) {
		return true
	}
	if i := strings.IndexAny(a.Local, dd.delims); i > 0 {
		base := Address{Local: a.Local[:i], Domain: a.Domain}
		if !seen[base.String()] {
			seen[base.String()] = true
			if dd.expandExact(base, depth, seen, users, remote) {
				return true
			}
		}
	}
	if to, ok := dd.aliases["@"+a.Domain]; ok {
		return dd.expandTargets(to, depth, seen, users, remote)
	}
	return false
}

func (dd expansion) expandExact(a Address, depth int, seen, users, remote map[string]bool) bool {
	key := a.String()
	if u, ok := dd.users[key]; ok {
		users[u] = true
		return true
	}
	if to, ok := dd.aliases[key]; ok {
		return dd.expandTargets(to, depth, seen, users, remote)
	}
	return false
}

func (dd expansion) expandTargets(to []string, depth int, seen, users, remote map[string]bool) bool {
	matched := false
	for _, t := range to {
		ta, err := ParseAddress(t)
		if err != nil {
			continue
		}
		if dd.expand(ta, depth+1, seen, users, remote) {
			matched = true
		}
	}
	return matched
}

// MaySendAs reports whether the authenticated user may use addr as
// envelope sender: the user's own address, the user's aliases, and alias
// blocks (not catch-alls) that deliver to that user.
func (d *Directory) MaySendAs(user, addr string) bool {
	a, err := ParseAddress(addr)
	if err != nil {
		return false
	}
	u := strings.ToLower(user)
	dd := d.data()
	if !dd.primary[u] {
		return false
	}
	key := a.String()
	if owner, ok := dd.users[key]; ok {
		return owner == u
	}
	if _, ok := dd.aliases[key]; ok {
		users, remote := map[string]bool{}, map[string]bool{}
		expansion{dirData: dd, delims: d.RecipientDelimiter()}.expandExact(a, 0, map[string]bool{key: true}, users, remote)
		return users[u]
	}
	return false
}

func sortedKeys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

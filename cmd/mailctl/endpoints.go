package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/mailctl/mailctl/plan/verify"
)

// endpointFlags are the -resolver and -connect flags of apply, with the
// names and meaning of verify's: where DNS questions go, and which address
// is dialled for a host:port (a name server "ns1.example.org:53"), so that
// tests point the command at local servers.
type endpointFlags struct {
	resolvers, connect listFlag
}

func addEndpointFlags(fs *flag.FlagSet) *endpointFlags {
	f := &endpointFlags{}
	fs.Var(&f.resolvers, "resolver", "recursive resolver `HOST:PORT` that finds the name servers (default: /etc/resolv.conf)")
	fs.Var(&f.connect, "connect", "dial `HOST:PORT=ADDR` instead of HOST:PORT, e.g. a name server's NAME:53 (repeatable)")
	return f
}

// resolver returns the -resolver client, or nil for the system's.
func (f *endpointFlags) resolver() verify.Resolver {
	if len(f.resolvers) == 0 {
		return nil
	}
	return &verify.DNSClient{Servers: f.resolvers, Recurse: true}
}

// addresses returns the -connect map, keys in lower case.
func (f *endpointFlags) addresses() (map[string]string, error) {
	out := map[string]string{}
	for _, c := range f.connect {
		from, to, ok := strings.Cut(c, "=")
		if !ok || from == "" || to == "" {
			return nil, fmt.Errorf("-connect wants HOST:PORT=ADDR, got %q", c)
		}
		out[strings.ToLower(from)] = to
	}
	return out, nil
}

// stdoutTerminal reports whether e.Stdout is a terminal, where progress
// lines are rewritten in place, and its width (0 if unknown).
func stdoutTerminal(e *env) (bool, int) {
	f, ok := e.Stdout.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false, 0
	}
	w, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		w = 0
	}
	return true, w
}

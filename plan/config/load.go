package config

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// LoadOptions are the inputs of Load besides the files.
type LoadOptions struct {
	// Vars are values from -var NAME=VALUE; they win over MAILCTL_VAR_NAME.
	Vars map[string]string
	// Getenv reads the environment (env() and MAILCTL_VAR_*); default os.Getenv.
	Getenv func(string) string
	// NoSecrets checks the configuration without its secrets, as validate
	// does: an env() whose variable is unset is an unknown value, not an
	// error, and the attributes that use it are left empty.
	NoSecrets bool
}

// Load reads every *.hcl file of dir (sorted by name), decodes and validates
// them. The returned Config is nil when diags has errors.
func Load(dir string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read configuration directory",
			Detail: fmt.Sprintf("Reading %s: %v.", dir, unwrapPathError(err))}}
	}
	srcs := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".hcl") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if dir == "." {
			name = e.Name()
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read configuration file",
				Detail: fmt.Sprintf("Reading %s: %v.", name, unwrapPathError(err))}}
		}
		srcs[name] = b
	}
	if len(srcs) == 0 {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "No configuration files",
			Detail: fmt.Sprintf("The directory %s has no *.hcl file. Run 'mailctl init' to write one.", dir)}}
	}
	return LoadSources(dir, srcs, opts)
}

// LoadSources is Load on in-memory sources keyed by file name; dir is where
// file() paths are relative to.
func LoadSources(dir string, srcs map[string][]byte, opts LoadOptions) (*Config, hcl.Diagnostics) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	names := make([]string, 0, len(srcs))
	for n := range srcs {
		names = append(names, n)
	}
	sort.Strings(names)
	if cfg, diags, ok := loadStreaming(dir, names, srcs, opts); ok {
		return cfg, diags
	}
	var diags hcl.Diagnostics
	var files []*hcl.File
	parsed := make(map[string]*hcl.File, len(names))
	for _, n := range names {
		f, d := ParseFile(srcs[n], n)
		diags = append(diags, d...)
		if f != nil {
			parsed[n] = f
		}
		if f != nil && !d.HasErrors() {
			files = append(files, f)
		}
	}
	cfg := &Config{Dir: dir, Files: parsed}
	if diags.HasErrors() {
		return cfg, diags
	}
	d := &decoder{cfg: cfg, opts: opts}
	d.decode(files)
	d.validate()
	// The syntax trees are not needed any more (diagnostics print from
	// the files' bytes): let them go, they are several times the size of
	// the Config.
	for n, f := range parsed {
		parsed[n] = &hcl.File{Body: hcl.EmptyBody(), Bytes: f.Bytes}
	}
	return cfg, d.diags
}

// loadStreaming is LoadSources for the configurations it can decode while
// parsing: the user and alias blocks (most of a large configuration) are
// decoded piece by piece as each is parsed, so that their syntax trees die
// at once instead of all living until the end of the load. Their decoding
// needs the evaluation context, so only configurations without variable
// blocks (no "variable" anywhere in the text) are loaded so; ok is false
// for the others, and for a file whose pieces do not parse, which
// LoadSources then loads whole.
func loadStreaming(dir string, names []string, srcs map[string][]byte, opts LoadOptions) (*Config, hcl.Diagnostics, bool) {
	for _, n := range names {
		if bytes.Contains(srcs[n], []byte("variable")) {
			return nil, nil, false
		}
	}
	parsed := make(map[string]*hcl.File, len(names))
	cfg := &Config{Dir: dir, Files: parsed}
	d := &decoder{cfg: cfg, opts: opts}
	d.setContext()
	var files []*hcl.File
	for _, n := range names {
		src := srcs[n]
		pieces := SplitTopLevel(src, PieceSize)
		body := &hclsyntax.Body{Attributes: hclsyntax.Attributes{}}
		for i, p := range pieces {
			f, diags := hclsyntax.ParseConfig(p.Src, n, p.Start)
			if len(diags) > 0 {
				return nil, nil, false
			}
			b := f.Body.(*hclsyntax.Body)
			for name, a := range b.Attributes {
				if _, dup := body.Attributes[name]; dup {
					return nil, nil, false
				}
				body.Attributes[name] = a
			}
			for _, blk := range b.Blocks {
				switch {
				case blk.Type == "user" && len(blk.Labels) == 1:
					d.user(blk.AsHCLBlock())
				case blk.Type == "alias" && len(blk.Labels) == 1:
					d.alias(blk.AsHCLBlock())
				default:
					body.Blocks = append(body.Blocks, blk)
				}
			}
			if i == 0 {
				body.SrcRange = b.SrcRange
			}
			body.SrcRange.End = b.SrcRange.End
			body.EndRange = b.EndRange
		}
		parsed[n] = &hcl.File{Body: hcl.EmptyBody(), Bytes: src}
		files = append(files, &hcl.File{Body: body, Bytes: src})
	}
	d.decode(files)
	d.validate()
	return cfg, d.diags, true
}

var rootSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "variable", LabelNames: []string{"name"}},
	{Type: "provider", LabelNames: []string{"kind", "name"}},
	{Type: "server", LabelNames: []string{"name"}},
	{Type: "domain", LabelNames: []string{"name"}},
	{Type: "user", LabelNames: []string{"address"}},
	{Type: "alias", LabelNames: []string{"address"}},
	{Type: "migration", LabelNames: []string{"name"}},
}}

type decoder struct {
	cfg   *Config
	opts  LoadOptions
	ctx   *hcl.EvalContext
	diags hcl.Diagnostics
	// pending references resolved once every block is known.
	refs []func()
	// migrationRanges holds each migration's domains attribute, for
	// diagnostics of cross-block checks.
	migrationRanges map[*Migration]*hcl.Attribute
	// badServers is set when a domain's servers are wrong (multinode.go).
	badServers bool
}

func (d *decoder) errf(rng *hcl.Range, summary, format string, a ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary,
		Detail: fmt.Sprintf(format, a...), Subject: rng})
}

// warnf records a warning: the configuration is valid, but probably not
// what the user wants.
func (d *decoder) warnf(rng *hcl.Range, summary, format string, a ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary,
		Detail: fmt.Sprintf(format, a...), Subject: rng})
}

func (d *decoder) decode(files []*hcl.File) {
	var blocks hcl.Blocks
	for _, f := range files {
		content, diags := f.Body.Content(rootSchema)
		d.diags = append(d.diags, diags...)
		blocks = append(blocks, content.Blocks...)
	}
	for _, b := range blocks.OfType("variable") {
		d.variable(b)
	}
	d.setContext()
	for _, b := range blocks.OfType("provider") {
		d.provider(b)
	}
	for _, b := range blocks.OfType("server") {
		d.server(b)
	}
	for _, b := range blocks.OfType("domain") {
		d.domain(b)
	}
	for _, b := range blocks.OfType("user") {
		d.user(b)
	}
	for _, b := range blocks.OfType("alias") {
		d.alias(b)
	}
	d.migrationRanges = map[*Migration]*hcl.Attribute{}
	for _, b := range blocks.OfType("migration") {
		d.migration(b)
	}
	for _, r := range d.refs {
		r()
	}
}

// setContext makes the evaluation context of the variables decoded so far.
func (d *decoder) setContext() {
	vars := map[string]cty.Value{}
	for _, v := range d.cfg.Variables {
		val := cty.StringVal(v.Value.Str)
		if v.Value.Sensitive {
			val = val.Mark(sensitive)
		}
		vars[v.Name] = val
	}
	d.ctx = &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)},
		Functions: functions(d.cfg.Dir, d.opts.Getenv, d.opts.NoSecrets),
	}
}

// ---- attribute helpers ----

// eval evaluates an expression, returning the unmarked value and whether it
// was sensitive; ok is false when evaluation failed (already reported).
func (d *decoder) eval(expr hcl.Expression) (val cty.Value, sens bool, ok bool) {
	v, diags := expr.Value(d.ctx)
	if diags.HasErrors() {
		// Drop follow-up "unknown value" noise: one problem, one diagnostic.
		d.diags = append(d.diags, diags...)
		return cty.NilVal, false, false
	}
	v, marks := v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		return cty.NilVal, false, false
	}
	return v, len(marks) > 0, true
}

func (d *decoder) str(a *hcl.Attribute) (Value, bool) {
	if a == nil {
		return Value{}, false
	}
	v, sens, ok := d.eval(a.Expr)
	if !ok {
		return Value{}, false
	}
	if v.IsNull() {
		d.errf(a.Expr.Range().Ptr(), "Invalid value", "The attribute %q must not be null.", a.Name)
		return Value{}, false
	}
	sv, err := convert.Convert(v, cty.String)
	if err != nil {
		d.errf(a.Expr.Range().Ptr(), "Incorrect attribute value type", "The attribute %q must be a string.", a.Name)
		return Value{}, false
	}
	return Value{Str: sv.AsString(), Sensitive: sens}, true
}

func (d *decoder) plainStr(a *hcl.Attribute) string {
	v, _ := d.str(a)
	return v.Str
}

func (d *decoder) strList(a *hcl.Attribute) []string {
	if a == nil {
		return nil
	}
	v, _, ok := d.eval(a.Expr)
	if !ok {
		return nil
	}
	lv, err := convert.Convert(v, cty.List(cty.String))
	if err != nil || lv.IsNull() {
		d.errf(a.Expr.Range().Ptr(), "Incorrect attribute value type", "The attribute %q must be a list of strings.", a.Name)
		return nil
	}
	var out []string
	for it := lv.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			d.errf(a.Expr.Range().Ptr(), "Invalid value", "The attribute %q must not contain null.", a.Name)
			return nil
		}
		out = append(out, e.AsString())
	}
	return out
}

func (d *decoder) num(a *hcl.Attribute, min, max int) (int, bool) {
	if a == nil {
		return 0, false
	}
	v, _, ok := d.eval(a.Expr)
	if !ok {
		return 0, false
	}
	nv, err := convert.Convert(v, cty.Number)
	if err != nil || nv.IsNull() {
		d.errf(a.Expr.Range().Ptr(), "Incorrect attribute value type", "The attribute %q must be a number.", a.Name)
		return 0, false
	}
	bf := nv.AsBigFloat()
	i, acc := bf.Int64()
	if acc != 0 || i < int64(min) || i > int64(max) {
		d.errf(a.Expr.Range().Ptr(), "Invalid value", "The attribute %q must be a whole number from %d to %d.", a.Name, min, max)
		return 0, false
	}
	return int(i), true
}

func (d *decoder) boolean(a *hcl.Attribute) bool {
	if a == nil {
		return false
	}
	v, _, ok := d.eval(a.Expr)
	if !ok {
		return false
	}
	bv, err := convert.Convert(v, cty.Bool)
	if err != nil || bv.IsNull() {
		d.errf(a.Expr.Range().Ptr(), "Incorrect attribute value type", "The attribute %q must be true or false.", a.Name)
		return false
	}
	return bv.True()
}

// ref reads a bare reference like provider.KIND.NAME or server.NAME and
// returns its parts after the root.
func (d *decoder) ref(a *hcl.Attribute, root string, parts int) ([]string, bool) {
	example := "server.NAME"
	if root == "provider" {
		example = "provider.KIND.NAME"
	}
	tr, diags := hcl.AbsTraversalForExpr(a.Expr)
	if diags.HasErrors() || tr.RootName() != root || len(tr) != parts+1 {
		d.errf(a.Expr.Range().Ptr(), "Invalid reference", "The attribute %q must be a reference like %s, without quotes.", a.Name, example)
		return nil, false
	}
	var out []string
	for _, step := range tr[1:] {
		ta, ok := step.(hcl.TraverseAttr)
		if !ok {
			d.errf(a.Expr.Range().Ptr(), "Invalid reference", "The attribute %q must be a reference like %s.", a.Name, example)
			return nil, false
		}
		out = append(out, ta.Name)
	}
	return out, true
}

func (d *decoder) providerRef(a *hcl.Attribute, need Capability, set func(*Provider)) {
	parts, ok := d.ref(a, "provider", 2)
	if !ok {
		return
	}
	d.refs = append(d.refs, func() {
		addr := "provider." + parts[0] + "." + parts[1]
		p := d.cfg.ProviderByAddr(addr)
		if p == nil {
			d.errf(a.Expr.Range().Ptr(), "Reference to undeclared provider",
				"No provider %q %q is declared. Declared: %s.", parts[0], parts[1], d.declaredProviders())
			return
		}
		if k, known := Kinds[p.Kind]; known && k.Caps&need == 0 {
			what, kinds := "DNS zones", KindsWith(CapDNS)
			if need == CapPTR {
				what, kinds = "reverse DNS (PTR)", KindsWith(CapPTR)
			}
			d.errf(a.Expr.Range().Ptr(), "Provider cannot do this",
				"The %s provider %s cannot manage %s; providers that can: %s.", p.Kind, addr, what, strings.Join(kinds, ", "))
			return
		}
		set(p)
	})
}

func (d *decoder) declaredProviders() string {
	if len(d.cfg.Providers) == 0 {
		return "none"
	}
	var s []string
	for _, p := range d.cfg.Providers {
		s = append(s, p.Addr())
	}
	return strings.Join(s, ", ")
}

// ---- blocks ----

func (d *decoder) variable(b *hcl.Block) {
	content, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "default"}, {Name: "description"}, {Name: "sensitive"}, {Name: "type"},
	}})
	d.diags = append(d.diags, diags...)
	name := b.Labels[0]
	if !hclIdent(name) {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid variable name", "%q is not a valid name: use letters, digits, _ and -.", name)
		return
	}
	v := &Variable{Name: name, DeclRange: b.DefRange}
	if a := content.Attributes["description"]; a != nil {
		v.Description = d.plainStr(a)
	}
	if a := content.Attributes["sensitive"]; a != nil {
		v.Sensitive = d.boolean(a)
	}
	if val, ok := d.opts.Vars[name]; ok {
		v.Value = Value{Str: val}
	} else if val := d.opts.Getenv("MAILCTL_VAR_" + name); val != "" {
		v.Value = Value{Str: val}
	} else if a := content.Attributes["default"]; a != nil {
		v.Value, _ = d.str(a)
	} else {
		d.errf(b.DefRange.Ptr(), "No value for required variable",
			"The variable %q has no default: set it with -var %s=VALUE or the environment variable MAILCTL_VAR_%s.", name, name, name)
	}
	v.Value.Sensitive = v.Value.Sensitive || v.Sensitive
	for _, o := range d.cfg.Variables {
		if o.Name == name {
			d.errf(b.DefRange.Ptr(), "Duplicate variable", "The variable %q is also declared at %s.", name, rangeString(o.DeclRange))
			return
		}
	}
	d.cfg.Variables = append(d.cfg.Variables, v)
}

func (d *decoder) provider(b *hcl.Block) {
	kind, name := b.Labels[0], b.Labels[1]
	k, known := Kinds[kind]
	if !known {
		d.errf(b.LabelRanges[0].Ptr(), "Unknown provider kind", "%q is not a provider kind mailctl knows. Known kinds: %s.",
			kind, strings.Join(KindNames(), ", "))
		return
	}
	schema := &hcl.BodySchema{}
	for _, a := range k.Required {
		schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: a, Required: true})
	}
	for _, a := range k.Optional {
		schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: a})
	}
	content, diags := b.Body.Content(schema)
	d.diags = append(d.diags, diags...)
	p := &Provider{Kind: kind, Name: name, Attrs: map[string]Value{}, DeclRange: b.DefRange}
	for n, a := range content.Attributes {
		v, ok := d.str(a)
		if !ok {
			continue
		}
		v.Sensitive = v.Sensitive || k.isSecret(n)
		p.Attrs[n] = v
	}
	if kind == "ovh" {
		if ep, ok := p.Attrs["endpoint"]; ok && !validOVHEndpoint(ep.Str) {
			d.errf(content.Attributes["endpoint"].Expr.Range().Ptr(), "Invalid OVH endpoint",
				"%q is not an OVH endpoint: use ovh-eu, ovh-ca, ovh-us, kimsufi-eu, soyoustart-eu or an https:// URL.", ep.Str)
		}
	}
	if t, ok := p.Attrs["timeout"]; ok {
		if dur, err := time.ParseDuration(t.Str); err != nil || dur < time.Second || dur > 10*time.Minute {
			d.errf(content.Attributes["timeout"].Expr.Range().Ptr(), "Invalid timeout",
				"%q is not a duration between 1s and 10m, such as \"30s\" or \"2m\".", t.Str)
		}
	}
	if kind == "rfc2136" {
		if s, ok := p.Attrs["server"]; ok && !validHostPort(s.Str) {
			d.errf(content.Attributes["server"].Expr.Range().Ptr(), "Invalid address",
				"%q is not a host:port address.", s.Str)
		}
	}
	if !hclIdent(name) {
		d.errf(b.LabelRanges[1].Ptr(), "Invalid provider name", "%q is not a valid name: use letters, digits, _ and -.", name)
	}
	for _, o := range d.cfg.Providers {
		if o.Kind == kind && o.Name == name {
			d.errf(b.DefRange.Ptr(), "Duplicate provider", "The provider %s is also declared at %s.", p.Addr(), rangeString(o.DeclRange))
			return
		}
	}
	d.cfg.Providers = append(d.cfg.Providers, p)
}

var serverSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "hostname", Required: true}, {Name: "ipv4", Required: true}, {Name: "ipv6"}, {Name: "ptr"}, {Name: "resolvers"},
		{Name: "recipient_delimiter"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "ssh"}, {Type: "local"}, {Type: "tls"}, {Type: "relay"}, {Type: "ports"}, {Type: "outbound"}, {Type: "inbound"}, {Type: "limits"}, {Type: "spam"}, {Type: "store"}},
}

func (d *decoder) server(b *hcl.Block) {
	content, diags := b.Body.Content(serverSchema)
	d.diags = append(d.diags, diags...)
	s := &Server{Name: b.Labels[0], DeclRange: b.DefRange, Ports: DefaultPorts}
	if !hclIdent(s.Name) {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid server name", "%q is not a valid name: use letters, digits, _ and -.", s.Name)
	}
	if a := content.Attributes["hostname"]; a != nil {
		s.Hostname = strings.ToLower(strings.TrimSuffix(d.plainStr(a), "."))
		if s.Hostname != "" && !validHostname(s.Hostname) {
			d.errf(a.Expr.Range().Ptr(), "Invalid hostname", "%q is not a fully qualified host name (letters, digits, hyphens, at least two labels).", s.Hostname)
		}
	}
	if a := content.Attributes["ipv4"]; a != nil {
		if v, ok := d.str(a); ok {
			ip, err := netip.ParseAddr(v.Str)
			if err != nil || !ip.Is4() {
				d.errf(a.Expr.Range().Ptr(), "Invalid IPv4 address", "%q is not an IPv4 address.", v.Str)
			} else {
				s.IPv4 = ip
			}
		}
	}
	if a := content.Attributes["ipv6"]; a != nil {
		if v, ok := d.str(a); ok {
			ip, err := netip.ParseAddr(v.Str)
			if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
				d.errf(a.Expr.Range().Ptr(), "Invalid IPv6 address", "%q is not an IPv6 address.", v.Str)
			} else {
				s.IPv6 = ip
			}
		}
	}
	if a := content.Attributes["ptr"]; a != nil {
		d.providerRef(a, CapPTR, func(p *Provider) { s.PTR = p })
	}
	if a := content.Attributes["resolvers"]; a != nil {
		for _, r := range d.strList(a) {
			// "tcp://IP:port": asked over TCP only (a resolver reached
			// through a tunnel that carries no UDP).
			if ap, err := netip.ParseAddrPort(strings.TrimPrefix(r, "tcp://")); err != nil || ap.Port() == 0 {
				d.errf(a.Expr.Range().Ptr(), "Invalid resolver", "%q is not an IP:port address like \"127.0.0.53:53\", \"[2001:db8::53]:53\" or \"tcp://127.0.0.53:53\" (a resolver cannot be found by name).", r)
				continue
			}
			s.Resolvers = append(s.Resolvers, r)
		}
	}
	d.recipientDelimiter(s, content.Attributes["recipient_delimiter"])
	blocks := map[string]*hcl.Block{}
	for _, blk := range content.Blocks {
		if prev, dup := blocks[blk.Type]; dup {
			d.errf(blk.DefRange.Ptr(), "Duplicate block", "Only one %q block is allowed in a server; another is at %s.", blk.Type, rangeString(prev.DefRange))
			continue
		}
		blocks[blk.Type] = blk
	}
	if blocks["ssh"] != nil && blocks["local"] != nil {
		d.errf(blocks["local"].DefRange.Ptr(), "Conflicting targets", "A server is reached either over ssh or as local, not both.")
	}
	if blk := blocks["local"]; blk != nil {
		c, diags := blk.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "dir"}}})
		d.diags = append(d.diags, diags...)
		s.Local = &Local{Dir: ".mailctl"}
		if a := c.Attributes["dir"]; a != nil {
			s.Local.Dir = d.plainStr(a)
		}
	} else {
		s.SSH = &SSH{User: "root"}
		if blk := blocks["ssh"]; blk != nil {
			d.ssh(blk, s.SSH)
		}
		if s.SSH.Address == "" && s.IPv4.IsValid() {
			s.SSH.Address = netip.AddrPortFrom(s.IPv4, 22).String()
		}
		if s.SSH.HostKey == "" && s.SSH.KnownHosts == "" {
			s.SSH.KnownHosts = "~/.ssh/known_hosts"
		}
	}
	if a := content.Attributes["ipv4"]; a != nil && s.IPv4.IsValid() {
		switch {
		case s.Local != nil && blocks["ssh"] == nil && !s.IPv4.IsLoopback():
			d.warnf(a.Expr.Range().Ptr(), "Local server on a non-loopback address",
				"The local server %q listens on %s, which is not a loopback address (127.0.0.0/8): the lab is reachable from the network. Use 127.0.0.1, or another 127.x address to run a second lab beside the first.", s.Name, s.IPv4)
		case s.Local == nil && (s.IPv4.IsPrivate() || s.IPv4.IsLoopback() || s.IPv4.IsLinkLocalUnicast() || s.IPv4.IsUnspecified()):
			d.warnf(a.Expr.Range().Ptr(), "Private IPv4 address",
				"%s is not a public address, yet the A record, SPF and PTR of server %q publish it: other mail servers cannot reach it. Give the server's public IPv4 address (behind NAT, the router's public address).", s.IPv4, s.Name)
		}
	}
	if blk := blocks["tls"]; blk != nil {
		d.tls(blk, &s.TLS)
	} else {
		d.errf(b.DefRange.Ptr(), "Missing tls block",
			`The server %q needs a tls block: tls { acme_email = "you@example.org" } for Let's Encrypt, cert_file + key_file, or self_signed = true for a lab.`, s.Name)
	}
	if blk := blocks["relay"]; blk != nil {
		s.Relay = d.relay(blk)
	}
	if blk := blocks["ports"]; blk != nil {
		d.ports(blk, &s.Ports)
	}
	if blk := blocks["outbound"]; blk != nil {
		s.Outbound = d.outbound(blk)
		if w := s.Outbound.Warmup; w != nil && w.Overflow == "relay" && s.Relay == nil {
			d.errf(blk.DefRange.Ptr(), "Warm-up overflow without relay", "warmup { overflow = \"relay\" } needs a relay block in the server.")
		}
	}
	if blk := blocks["inbound"]; blk != nil {
		s.Inbound = d.inbound(blk)
	}
	if blk := blocks["limits"]; blk != nil {
		s.Limits = d.limits(blk)
	}
	if blk := blocks["spam"]; blk != nil {
		s.Spam = d.spam(blk)
	}
	if blk := blocks["store"]; blk != nil {
		s.Store = d.store(blk)
	}
	for _, o := range d.cfg.Servers {
		if o.Name == s.Name {
			d.errf(b.DefRange.Ptr(), "Duplicate server", "The server %q is also declared at %s.", s.Name, rangeString(o.DeclRange))
			return
		}
	}
	d.cfg.Servers = append(d.cfg.Servers, s)
}

func (d *decoder) ssh(b *hcl.Block, s *SSH) {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "address"}, {Name: "user"}, {Name: "host_key"}, {Name: "known_hosts"}, {Name: "identity"},
	}})
	d.diags = append(d.diags, diags...)
	if a := c.Attributes["address"]; a != nil {
		s.Address = d.plainStr(a)
		if !validHostPort(s.Address) {
			d.errf(a.Expr.Range().Ptr(), "Invalid address", "%q is not a host:port address.", s.Address)
		}
	}
	if a := c.Attributes["user"]; a != nil {
		s.User = d.plainStr(a)
	}
	if a := c.Attributes["host_key"]; a != nil {
		s.HostKey = strings.TrimSpace(d.plainStr(a))
		if !validAuthorizedKey(s.HostKey) {
			d.errf(a.Expr.Range().Ptr(), "Invalid host key", "host_key must be a public key in authorized_keys format, like \"ssh-ed25519 AAAA...\".")
		}
	}
	if a := c.Attributes["known_hosts"]; a != nil {
		s.KnownHosts = d.plainStr(a)
	}
	if a := c.Attributes["identity"]; a != nil {
		s.Identity = d.plainStr(a)
	}
}

func (d *decoder) tls(b *hcl.Block, t *TLS) {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "acme_email"}, {Name: "acme_directory"}, {Name: "cert_file"}, {Name: "key_file"}, {Name: "self_signed"},
	}})
	d.diags = append(d.diags, diags...)
	if a := c.Attributes["acme_email"]; a != nil {
		t.ACMEEmail = d.plainStr(a)
		if !validMailbox(t.ACMEEmail) {
			d.errf(a.Expr.Range().Ptr(), "Invalid e-mail address", "%q is not an e-mail address.", t.ACMEEmail)
		}
	}
	if a := c.Attributes["acme_directory"]; a != nil {
		t.ACMEDirectory = d.plainStr(a)
	}
	if a := c.Attributes["cert_file"]; a != nil {
		t.CertFile = d.plainStr(a)
	}
	if a := c.Attributes["key_file"]; a != nil {
		t.KeyFile = d.plainStr(a)
	}
	if a := c.Attributes["self_signed"]; a != nil {
		t.SelfSigned = d.boolean(a)
	}
	modes := 0
	if t.ACMEEmail != "" {
		modes++
	}
	if t.CertFile != "" || t.KeyFile != "" {
		modes++
		if t.CertFile == "" || t.KeyFile == "" {
			d.errf(b.DefRange.Ptr(), "Incomplete certificate", "cert_file and key_file go together.")
		}
	}
	if t.SelfSigned {
		modes++
	}
	if modes != 1 {
		d.errf(b.DefRange.Ptr(), "Invalid tls block", "Set exactly one of acme_email, cert_file + key_file, or self_signed = true.")
	}
}

func (d *decoder) relay(b *hcl.Block) *Relay {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "address", Required: true}, {Name: "username"}, {Name: "password"}, {Name: "domains"}, {Name: "mx_hosts"}, {Name: "ca_file"},
	}})
	d.diags = append(d.diags, diags...)
	r := &Relay{}
	if a := c.Attributes["address"]; a != nil {
		r.Address = d.plainStr(a)
		if !validHostPort(r.Address) {
			d.errf(a.Expr.Range().Ptr(), "Invalid address", "%q is not a host:port address.", r.Address)
		}
	}
	if a := c.Attributes["username"]; a != nil {
		r.Username, _ = d.str(a)
	}
	if a := c.Attributes["password"]; a != nil {
		r.Password, _ = d.str(a)
		r.Password.Sensitive = true
	}
	if a := c.Attributes["domains"]; a != nil {
		for _, dom := range d.strList(a) {
			dom = strings.ToLower(strings.TrimSuffix(dom, "."))
			if !validHostname(dom) {
				d.errf(a.Expr.Range().Ptr(), "Invalid domain name", "%q is not a domain name.", dom)
				continue
			}
			r.Domains = append(r.Domains, dom)
		}
	}
	if a := c.Attributes["mx_hosts"]; a != nil {
		for _, h := range d.strList(a) {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
			if !validHostname(strings.TrimPrefix(h, "*.")) {
				d.errf(a.Expr.Range().Ptr(), "Invalid MX pattern", "%q is not a host name or a pattern like *.mail.protection.outlook.com.", h)
				continue
			}
			r.MXHosts = append(r.MXHosts, h)
		}
	}
	if a := c.Attributes["ca_file"]; a != nil {
		r.CAFile = d.plainStr(a)
		if r.CAFile == "" {
			d.errf(a.Expr.Range().Ptr(), "Invalid CA file", "ca_file must be the path of a PEM file.")
		}
	}
	return r
}

// durationAttr decodes a duration attribute ("30s", "4h", "5d") between
// lo and hi.
func (d *decoder) durationAttr(a *hcl.Attribute, lo, hi time.Duration, example string) time.Duration {
	v, ok := d.str(a)
	if !ok {
		return 0
	}
	secs, err := parseDuration(v.Str)
	dur := time.Duration(secs) * time.Second
	if err != nil || dur < lo || dur > hi {
		d.errf(a.Expr.Range().Ptr(), "Invalid duration", "%q must be a duration from %s to %s, like %q.", v.Str, fmtDuration(lo), fmtDuration(hi), example)
		return 0
	}
	return dur
}

// fmtDuration prints d in the largest whole unit: 1s, 30m, 4h, 30d.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

func (d *decoder) outbound(b *hcl.Block) *Outbound {
	c, diags := b.Body.Content(&hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "prefer"}, {Name: "source_ipv4"}, {Name: "source_ipv6"}, {Name: "port"}, {Name: "max_age"}, {Name: "delay_notice"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "warmup"}},
	})
	d.diags = append(d.diags, diags...)
	o := &Outbound{Prefer: "ipv6"}
	if a := c.Attributes["port"]; a != nil {
		o.Port, _ = d.num(a, 1, 65535)
	}
	if a := c.Attributes["max_age"]; a != nil {
		o.MaxAge = d.durationAttr(a, time.Hour, 30*24*time.Hour, "5d")
	}
	if a := c.Attributes["delay_notice"]; a != nil {
		o.DelayNotice = d.durationAttr(a, 10*time.Minute, 7*24*time.Hour, "4h")
	}
	if o.MaxAge > 0 && o.DelayNotice >= o.MaxAge {
		d.errf(b.DefRange.Ptr(), "Delay notice after expiry", "delay_notice (%s) must be shorter than max_age (%s): the sender would never hear of the delay.", fmtDuration(o.DelayNotice), fmtDuration(o.MaxAge))
	}
	if a := c.Attributes["prefer"]; a != nil {
		o.Prefer = d.plainStr(a)
		if !oneOf(o.Prefer, "ipv6", "ipv4") {
			d.errf(a.Expr.Range().Ptr(), "Invalid address preference", "%q must be ipv6 or ipv4.", o.Prefer)
		}
	}
	for _, f := range []struct {
		name string
		dst  *netip.Addr
		v6   bool
	}{{"source_ipv4", &o.SourceIPv4, false}, {"source_ipv6", &o.SourceIPv6, true}} {
		a := c.Attributes[f.name]
		if a == nil {
			continue
		}
		v := d.plainStr(a)
		ip, err := netip.ParseAddr(v)
		if err != nil || ip.Is6() != f.v6 || ip.Is4In6() {
			d.errf(a.Expr.Range().Ptr(), "Invalid source address", "%q is not an %s address.", v, map[bool]string{false: "IPv4", true: "IPv6"}[f.v6])
			continue
		}
		*f.dst = ip
	}
	for _, wb := range c.Blocks {
		wc, diags := wb.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "weeks"}, {Name: "start"}, {Name: "overflow"}}})
		d.diags = append(d.diags, diags...)
		w := &Warmup{Weeks: 6, Overflow: "defer"}
		if a := wc.Attributes["weeks"]; a != nil {
			w.Weeks, _ = d.num(a, 1, 52)
		}
		if a := wc.Attributes["start"]; a != nil {
			w.Start = d.plainStr(a)
			if _, err := time.Parse("2006-01-02", w.Start); err != nil {
				d.errf(a.Expr.Range().Ptr(), "Invalid date", "%q is not a date like 2026-03-02.", w.Start)
			}
		}
		if a := wc.Attributes["overflow"]; a != nil {
			w.Overflow = d.plainStr(a)
			if !oneOf(w.Overflow, "defer", "relay") {
				d.errf(a.Expr.Range().Ptr(), "Invalid warm-up overflow", "%q must be defer or relay.", w.Overflow)
			}
		}
		o.Warmup = w
	}
	return o
}

// limits decodes a server's limits block. The bounds are the server's
// own (server/config validateLimits): what passes here passes there.
func (d *decoder) limits(b *hcl.Block) Limits {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "max_message_size"}, {Name: "max_recipients"}, {Name: "smtp_conns_per_ip"},
		{Name: "imap_conns_per_ip"}, {Name: "imap_conns_per_user_ip"}, {Name: "auth_failures_per_ip"},
		{Name: "command_timeout"},
	}})
	d.diags = append(d.diags, diags...)
	var l Limits
	if a := c.Attributes["max_message_size"]; a != nil {
		if v, ok := d.str(a); ok {
			n, err := parseSize(v.Str)
			if err != nil || n < 1<<10 || n > 1<<30 {
				d.errf(a.Expr.Range().Ptr(), "Invalid size", "%q must be a size from 1KiB to 1GiB, like \"50MiB\".", v.Str)
			} else {
				l.MaxMessageBytes = n
			}
		}
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{
		{"max_recipients", &l.MaxRecipients}, {"smtp_conns_per_ip", &l.SMTPConnsPerIP},
		{"imap_conns_per_ip", &l.IMAPConnsPerIP}, {"imap_conns_per_user_ip", &l.IMAPConnsPerUserIP},
		{"auth_failures_per_ip", &l.AuthFailuresPerIP},
	} {
		if a := c.Attributes[f.name]; a != nil {
			*f.dst, _ = d.num(a, 1, 100000)
		}
	}
	if l.IMAPConnsPerIP > 0 && l.IMAPConnsPerUserIP > l.IMAPConnsPerIP {
		d.errf(b.DefRange.Ptr(), "IMAP caps out of order", "imap_conns_per_user_ip (%d) is more than imap_conns_per_ip (%d): one user could never reach it.", l.IMAPConnsPerUserIP, l.IMAPConnsPerIP)
	}
	if a := c.Attributes["command_timeout"]; a != nil {
		l.CommandTimeout = d.durationAttr(a, time.Second, time.Hour, "5m")
	}
	return l
}

func (d *decoder) inbound(b *hcl.Block) *Inbound {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "dnsbl"}, {Name: "greylisting"}, {Name: "greylist_delay"}, {Name: "dmarc_policy"},
	}})
	d.diags = append(d.diags, diags...)
	in := &Inbound{DMARCPolicy: "enforce"}
	if a := c.Attributes["dnsbl"]; a != nil {
		in.DNSBL = []string{}
		for _, z := range d.strList(a) {
			if !validHostname(z) {
				d.errf(a.Expr.Range().Ptr(), "Invalid DNSBL zone", "%q is not a DNS zone name.", z)
				continue
			}
			in.DNSBL = append(in.DNSBL, strings.ToLower(z))
		}
	}
	if a := c.Attributes["greylisting"]; a != nil {
		in.Greylisting = d.boolean(a)
	}
	if a := c.Attributes["greylist_delay"]; a != nil {
		in.GreylistDelay = d.durationAttr(a, time.Second, 24*time.Hour, "5m")
	}
	if a := c.Attributes["dmarc_policy"]; a != nil {
		in.DMARCPolicy = d.plainStr(a)
		if !oneOf(in.DMARCPolicy, "enforce", "report") {
			d.errf(a.Expr.Range().Ptr(), "Invalid DMARC policy handling", "%q must be enforce or report.", in.DMARCPolicy)
		}
	}
	return in
}

func (d *decoder) ports(b *hcl.Block, p *Ports) {
	names := []string{"smtp", "submission", "submissions", "imap", "imaps", "https", "http"}
	fields := []*int{&p.SMTP, &p.Submission, &p.Submissions, &p.IMAP, &p.IMAPS, &p.HTTPS, &p.HTTP}
	schema := &hcl.BodySchema{}
	for _, n := range names {
		schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: n})
	}
	c, diags := b.Body.Content(schema)
	d.diags = append(d.diags, diags...)
	seen := map[int]string{}
	for i, n := range names {
		if a := c.Attributes[n]; a != nil {
			if v, ok := d.num(a, 0, 65535); ok {
				*fields[i] = v
			}
		}
		if v := *fields[i]; v != 0 {
			if other, dup := seen[v]; dup {
				d.errf(b.DefRange.Ptr(), "Duplicate port", "Port %d is used by both %s and %s.", v, other, n)
			}
			seen[v] = n
		}
	}
}

var domainSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "dns", Required: true}, {Name: "server"}, {Name: "servers"}, {Name: "mx_priority"}, {Name: "zone"}, {Name: "ttl"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "dkim"}, {Type: "spf"}, {Type: "dmarc"}, {Type: "mta_sts"}, {Type: "tls_rpt"}},
}

func (d *decoder) domain(b *hcl.Block) {
	content, diags := b.Body.Content(domainSchema)
	d.diags = append(d.diags, diags...)
	dom := &Domain{Name: strings.ToLower(strings.TrimSuffix(b.Labels[0], ".")), DeclRange: b.DefRange, TTL: 3600,
		DKIM: DKIM{Selector: "mailctl", Grace: DefaultDKIMGrace}, SPF: SPF{All: "~all"}, DMARC: DMARC{Policy: "none"}}
	if name, err := idnDomain(dom.Name); err != nil {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid domain name", "%q is not a valid internationalised domain name: %v.", b.Labels[0], err)
	} else if dom.Name = name; !validHostname(dom.Name) {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid domain name", "%q is not a domain name.", b.Labels[0])
	}
	if a := content.Attributes["dns"]; a != nil {
		d.providerRef(a, CapDNS, func(p *Provider) { dom.DNS = p })
	}
	d.domainServers(b, content, dom)
	if a := content.Attributes["zone"]; a != nil {
		dom.Zone = strings.ToLower(strings.TrimSuffix(d.plainStr(a), "."))
		if z, err := idnDomain(dom.Zone); err != nil {
			d.errf(a.Expr.Range().Ptr(), "Invalid zone", "%q is not a valid internationalised domain name: %v.", dom.Zone, err)
		} else {
			dom.Zone = z
		}
		if dom.Zone != "" && dom.Zone != dom.Name && !strings.HasSuffix(dom.Name, "."+dom.Zone) {
			d.errf(a.Expr.Range().Ptr(), "Invalid zone", "The zone %q does not contain the domain %q.", dom.Zone, dom.Name)
		}
	}
	if a := content.Attributes["ttl"]; a != nil {
		dom.TTL, _ = d.num(a, 60, 604800)
	}
	seen := map[string]*hcl.Block{}
	for _, blk := range content.Blocks {
		if prev, dup := seen[blk.Type]; dup {
			d.errf(blk.DefRange.Ptr(), "Duplicate block", "Only one %q block is allowed in a domain; another is at %s.", blk.Type, rangeString(prev.DefRange))
			continue
		}
		seen[blk.Type] = blk
		switch blk.Type {
		case "dkim":
			c, diags := blk.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "selector"}, {Name: "previous"}, {Name: "rotate_every"}, {Name: "grace_period"}}})
			d.diags = append(d.diags, diags...)
			if a := c.Attributes["selector"]; a != nil {
				dom.DKIM.Selector = d.plainStr(a)
				if !validLabel(dom.DKIM.Selector) {
					d.errf(a.Expr.Range().Ptr(), "Invalid DKIM selector", "%q is not a DNS label (letters, digits, hyphens).", dom.DKIM.Selector)
				}
			}
			if a := c.Attributes["previous"]; a != nil {
				for _, p := range d.strList(a) {
					if !validLabel(p) || p == dom.DKIM.Selector {
						d.errf(a.Expr.Range().Ptr(), "Invalid DKIM selector", "%q is not a DNS label other than the signing selector.", p)
						continue
					}
					dom.DKIM.Previous = append(dom.DKIM.Previous, p)
				}
			}
			if a := c.Attributes["rotate_every"]; a != nil {
				dom.DKIM.RotateEvery = d.durationAttr(a, 24*time.Hour, 3650*24*time.Hour, "180d")
			}
			if a := c.Attributes["grace_period"]; a != nil {
				// Seconds allowed: a lab's rotation test does not wait days.
				dom.DKIM.Grace = d.durationAttr(a, time.Second, 365*24*time.Hour, "7d")
			}
		case "spf":
			c, diags := blk.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "include"}, {Name: "all"}}})
			d.diags = append(d.diags, diags...)
			if a := c.Attributes["include"]; a != nil {
				dom.SPF.Include = d.strList(a)
				for _, inc := range dom.SPF.Include {
					if !validDomainName(inc) {
						d.errf(a.Expr.Range().Ptr(), "Invalid SPF include", "%q is not a domain name.", inc)
					}
				}
			}
			if a := c.Attributes["all"]; a != nil {
				dom.SPF.All = d.plainStr(a)
				if !oneOf(dom.SPF.All, "~all", "-all", "?all") {
					d.errf(a.Expr.Range().Ptr(), "Invalid SPF all", "%q must be one of ~all, -all, ?all.", dom.SPF.All)
				}
			}
		case "dmarc":
			d.dmarc(blk, &dom.DMARC)
		case "mta_sts":
			c, diags := blk.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "mode"}, {Name: "max_age"}}})
			d.diags = append(d.diags, diags...)
			dom.MTASTS = &MTASTS{Mode: "testing", MaxAge: 604800}
			if a := c.Attributes["mode"]; a != nil {
				dom.MTASTS.Mode = d.plainStr(a)
				if !oneOf(dom.MTASTS.Mode, "testing", "enforce", "none") {
					d.errf(a.Expr.Range().Ptr(), "Invalid MTA-STS mode", "%q must be one of testing, enforce, none.", dom.MTASTS.Mode)
				}
			}
			if a := c.Attributes["max_age"]; a != nil {
				if v, ok := d.str(a); ok {
					secs, err := parseDuration(v.Str)
					if err != nil || secs < 86400 || secs > 31557600 {
						d.errf(a.Expr.Range().Ptr(), "Invalid duration", "%q must be a duration from 1d to 365d, like \"7d\".", v.Str)
					} else {
						dom.MTASTS.MaxAge = secs
					}
				}
			}
		case "tls_rpt":
			c, diags := blk.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "rua", Required: true}}})
			d.diags = append(d.diags, diags...)
			dom.TLSRPT = &TLSRPT{}
			if a := c.Attributes["rua"]; a != nil {
				dom.TLSRPT.RUA = d.strList(a)
				d.checkReportURIs(a, dom.TLSRPT.RUA, true)
			}
		}
	}
	for _, o := range d.cfg.Domains {
		if o.Name == dom.Name {
			d.errf(b.DefRange.Ptr(), "Duplicate domain", "The domain %q is also declared at %s.", dom.Name, rangeString(o.DeclRange))
			return
		}
	}
	d.cfg.Domains = append(d.cfg.Domains, dom)
}

func (d *decoder) dmarc(b *hcl.Block, m *DMARC) {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "policy"}, {Name: "subdomain_policy"}, {Name: "rua"}, {Name: "ruf"}, {Name: "pct"}, {Name: "adkim"}, {Name: "aspf"},
	}})
	d.diags = append(d.diags, diags...)
	policy := func(name string, dst *string) {
		if a := c.Attributes[name]; a != nil {
			*dst = d.plainStr(a)
			if !oneOf(*dst, "none", "quarantine", "reject") {
				d.errf(a.Expr.Range().Ptr(), "Invalid DMARC policy", "%q must be one of none, quarantine, reject.", *dst)
			}
		}
	}
	policy("policy", &m.Policy)
	policy("subdomain_policy", &m.SubdomainPolicy)
	if a := c.Attributes["rua"]; a != nil {
		m.RUA = d.strList(a)
		d.checkReportURIs(a, m.RUA, false)
	}
	if a := c.Attributes["ruf"]; a != nil {
		m.RUF = d.strList(a)
		d.checkReportURIs(a, m.RUF, false)
	}
	if a := c.Attributes["pct"]; a != nil {
		m.Percent, _ = d.num(a, 0, 100)
	}
	for _, n := range []string{"adkim", "aspf"} {
		if a := c.Attributes[n]; a != nil {
			v := d.plainStr(a)
			if !oneOf(v, "r", "s") {
				d.errf(a.Expr.Range().Ptr(), "Invalid DMARC alignment", "%q must be r (relaxed) or s (strict).", v)
			}
			if n == "adkim" {
				m.ADKIM = v
			} else {
				m.ASPF = v
			}
		}
	}
}

func (d *decoder) checkReportURIs(a *hcl.Attribute, uris []string, httpsOK bool) {
	for _, u := range uris {
		switch {
		case strings.HasPrefix(u, "mailto:") && validMailbox(strings.TrimPrefix(u, "mailto:")):
		case httpsOK && strings.HasPrefix(u, "https://") && len(u) > len("https://"):
		default:
			want := "mailto:ADDRESS"
			if httpsOK {
				want += " or https://URL"
			}
			d.errf(a.Expr.Range().Ptr(), "Invalid report address", "%q must be %s.", u, want)
		}
	}
}

func (d *decoder) user(b *hcl.Block) {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: append([]hcl.AttributeSchema{
		{Name: "name"}, {Name: "password_hash", Required: true}, {Name: "aliases"}, {Name: "quota"},
		{Name: "sieve"},
	}, userCredentialAttrs...), Blocks: append([]hcl.BlockHeaderSchema{{Type: "vacation"}}, userCredentialBlocks...)})
	d.diags = append(d.diags, diags...)
	u := &User{Address: strings.ToLower(b.Labels[0]), DeclRange: b.DefRange}
	if a, err := idnAddress(u.Address); err != nil {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid e-mail address", "%q is not a valid international address: %v.", b.Labels[0], err)
	} else if u.Address = a; !validMailbox(u.Address) {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid e-mail address", "%q is not an e-mail address like name@example.org.", b.Labels[0])
	}
	if a := c.Attributes["name"]; a != nil {
		u.Name = d.plainStr(a)
	}
	if a := c.Attributes["password_hash"]; a != nil {
		if v, ok := d.str(a); ok {
			u.PasswordHash = Value{Str: v.Str, Sensitive: true}
			if !validArgon2id(v.Str) {
				d.errf(a.Expr.Range().Ptr(), "Invalid password hash",
					"password_hash must be an argon2id hash ($argon2id$v=19$m=...,t=...,p=...$salt$key); make one with 'mailctl passwd'.")
			} else if IsPlaceholderHash(v.Str) {
				d.warnf(a.Expr.Range().Ptr(), "Placeholder password hash",
					"%s has the placeholder hash that mailctl init wrote: nobody can log in as this user. Run 'mailctl passwd' and put the hash it prints here.", u.Address)
			}
		}
	}
	if a := c.Attributes["aliases"]; a != nil {
		for _, al := range d.strList(a) {
			al = strings.ToLower(al)
			ca, err := idnAddress(al)
			if err != nil {
				d.errf(a.Expr.Range().Ptr(), "Invalid e-mail address", "The alias %q is not a valid international address: %v.", al, err)
				continue
			}
			al = ca
			if !validMailbox(al) {
				d.errf(a.Expr.Range().Ptr(), "Invalid e-mail address", "The alias %q is not an e-mail address.", al)
				continue
			}
			u.Aliases = append(u.Aliases, al)
		}
	}
	if a := c.Attributes["quota"]; a != nil {
		if v, ok := d.str(a); ok {
			q, err := parseSize(v.Str)
			if err != nil {
				d.errf(a.Expr.Range().Ptr(), "Invalid size", "%q is not a size like \"500MiB\" or \"10GiB\".", v.Str)
			}
			u.QuotaBytes = q
		}
	}
	d.userCredentials(u, c)
	d.userSieve(u, c)
	d.cfg.Users = append(d.cfg.Users, u)
}

func (d *decoder) alias(b *hcl.Block) {
	c, diags := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "to", Required: true}}})
	d.diags = append(d.diags, diags...)
	al := &Alias{Address: strings.ToLower(b.Labels[0]), DeclRange: b.DefRange}
	if a, err := idnAddress(al.Address); err != nil {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid e-mail address", "%q is not a valid international address: %v.", b.Labels[0], err)
	} else {
		al.Address = a
	}
	if strings.HasPrefix(al.Address, "@") {
		if !validHostname(al.Address[1:]) {
			d.errf(b.LabelRanges[0].Ptr(), "Invalid catch-all", "%q is not a catch-all like @example.org.", b.Labels[0])
		}
	} else if !validMailbox(al.Address) {
		d.errf(b.LabelRanges[0].Ptr(), "Invalid e-mail address", "%q is not an e-mail address like name@example.org.", b.Labels[0])
	}
	if a := c.Attributes["to"]; a != nil {
		for _, t := range d.strList(a) {
			t = strings.ToLower(t)
			ct, err := idnAddress(t)
			if err != nil {
				d.errf(a.Expr.Range().Ptr(), "Invalid e-mail address", "The target %q is not a valid international address: %v.", t, err)
				continue
			}
			t = ct
			if !validMailbox(t) {
				d.errf(a.Expr.Range().Ptr(), "Invalid e-mail address", "The target %q is not an e-mail address.", t)
				continue
			}
			al.To = append(al.To, t)
		}
		if len(al.To) == 0 && !d.diags.HasErrors() {
			d.errf(a.Expr.Range().Ptr(), "Empty alias", "The alias %q has no target.", al.Address)
		}
	}
	d.cfg.Aliases = append(d.cfg.Aliases, al)
}

func oneOf(s string, opts ...string) bool {
	for _, o := range opts {
		if s == o {
			return true
		}
	}
	return false
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/mailctl/mailctl/plan/config"
)

func init() {
	register(&command{
		name:     "init",
		synopsis: "write a commented mail.hcl and .gitignore to start from",
		run:      runInit,
	})
}

// initDNSKinds are the DNS providers `init` can scaffold, the first the default.
var initDNSKinds = []string{"cloudflare", "ovh", "rfc2136", "zonefile"}

// initNow is the clock of `init` (the DKIM selector carries the year); tests
// replace it.
var initNow = time.Now

// initGitignore is what `init` puts in .gitignore.
const initGitignore = `# mailctl: local state (lab server data, zone files, caches) and saved plans.
.mailctl/
*.mailplan
# mailctl export's default output: users' mail, never for the repository.
mailctl-export-*/
`

// initValues are the answers that shape the scaffold.
type initValues struct {
	Domain string
	Host   string
	IPv4   string
	IPv6   string
	DNS    string
	// Server is the label of the server block (from the host name).
	Server string
	// Selector is the DKIM selector.
	Selector string
	// PlaceholderHash is config.PlaceholderPasswordHash.
	PlaceholderHash string
	// MailAt is who receives the domain's mail today: "" (nobody, or this
	// server), "google", "microsoft", or the IMAP HOST:PORT of another
	// provider. Any but "" writes a migration block in its first phase.
	MailAt string
	// MailAtName names MailAt for people; SourceAddress is the IMAP
	// server of the migration ("" for the default, Gmail).
	MailAtName, SourceAddress string
}

func runInit(ctx context.Context, e *env, args []string) int {
	flags := newFlagSet(e, "init", "[-domain DOMAIN] [-host HOSTNAME] [-ip IP[,IP]] [-dns cloudflare|ovh|rfc2136|zonefile] [-current-mail none|google|microsoft|HOST:PORT]")
	domain := flags.String("domain", "", "the mail `domain` (example.org)")
	host := flags.String("host", "", "the server's `hostname` (default mail.DOMAIN)")
	ip := flags.String("ip", "", "the server's public `IP` addresses: its IPv4, optionally followed by its IPv6, comma-separated")
	dns := flags.String("dns", "", "who hosts the domain's DNS: `KIND` cloudflare (default), ovh, rfc2136 or zonefile")
	mailAt := flags.String("current-mail", "", "who receives the domain's mail today: `WHO` none (default), google, microsoft, or the IMAP HOST:PORT of another provider; any but none writes a migration block")
	if done, code := parseFlags(flags, args); done {
		return code
	}
	if flags.NArg() > 0 {
		return errorf(e, "init takes no arguments, only flags (got %q)", flags.Arg(0))
	}

	// Refuse early, before asking anything, when mail.hcl exists.
	mailPath := filepath.Join(e.Dir, "mail.hcl")
	if _, err := os.Lstat(mailPath); err == nil {
		return errorf(e, "init: %s already exists; init never overwrites a file (remove it or pick another -chdir)", mailPath)
	}

	v, err := initAsk(e, *domain, *host, *ip, *dns, *mailAt)
	if err != nil {
		return errorf(e, "init: %v", err)
	}
	if err := ctx.Err(); err != nil {
		return errorf(e, "init: %v", err)
	}
	v.Server = initServerLabel(v.Host)
	v.Selector = fmt.Sprintf("%s-%d", v.Server, initNow().Year())
	if v.PlaceholderHash, err = initPlaceholderHash(); err != nil {
		return errorf(e, "init: %v", err)
	}
	conf, err := renderInit(v)
	if err != nil {
		return errorf(e, "init: %v", err)
	}

	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return errorf(e, "init: create the directory: %v", err)
	}
	if err := initCreate(mailPath, conf, 0o600); err != nil { // it holds password hashes
		return errorf(e, "init: %v", err)
	}
	fmt.Fprintf(e.Stdout, "Wrote %s.\n", mailPath)
	gi := filepath.Join(e.Dir, ".gitignore")
	switch err := initCreate(gi, []byte(initGitignore), 0o644); {
	case err == nil:
		fmt.Fprintf(e.Stdout, "Wrote %s.\n", gi)
	case errors.Is(err, fs.ErrExist):
		if old, _ := os.ReadFile(gi); !bytes.Contains(old, []byte(".mailctl/")) || !bytes.Contains(old, []byte("*.mailplan")) {
			fmt.Fprintf(e.Stdout, "Kept the existing %s: add the lines .mailctl/ and *.mailplan to it.\n", gi)
		}
	default:
		return errorf(e, "init: %v", err)
	}
	fmt.Fprintf(e.Stdout, `
Next steps:
  1. mailctl passwd            and put the hash in the user block of mail.hcl
  2. edit mail.hcl             (credentials come from the environment: see env(...))
  3. mailctl validate          check the configuration
  4. mailctl plan              see what would change
`)
	if v.MailAt != "" {
		fmt.Fprintf(e.Stdout, `  5. mailctl apply             set up the server; the MX stay at %s (migration phase "presync")
  6. mailctl migrate           copy the mailboxes; then phase = "cutover", plan, apply, migrate again
`, v.MailAtName)
	} else {
		fmt.Fprintln(e.Stdout, "  5. mailctl apply             make it so, then verify")
	}
	return exitOK
}

// initCreate writes a new file with permissions perm, failing with an
// error naming it when it exists already.
func initCreate(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; init never overwrites a file: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("create %s: %w", path, unwrapPathError(err))
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// initAsk completes and checks the flag values: on a terminal it asks for the
// missing ones (again after an invalid answer); otherwise a missing domain or
// IP address is an error.
func initAsk(e *env, domain, host, ip, dns, mailAt string) (initValues, error) {
	var v initValues
	in := bufio.NewReader(e.Stdin)
	ask := func(question, def string, check func(string) error) (string, error) {
		for {
			if def != "" {
				fmt.Fprintf(e.Stderr, "%s [%s]: ", question, def)
			} else {
				fmt.Fprintf(e.Stderr, "%s: ", question)
			}
			line, err := in.ReadString('\n')
			if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
				fmt.Fprintln(e.Stderr)
				return "", fmt.Errorf("no answer for %q: %w", question, err)
			}
			answer := strings.TrimSpace(line)
			if answer == "" {
				answer = def
			}
			if cerr := check(answer); cerr != nil {
				fmt.Fprintf(e.Stderr, "  %v\n", cerr)
				if err != nil { // EOF: no second chance
					return "", cerr
				}
				continue
			}
			return answer, nil
		}
	}

	if !e.IsTerminal {
		var missing []string
		if domain == "" {
			missing = append(missing, "-domain")
		}
		if ip == "" {
			missing = append(missing, "-ip")
		}
		if len(missing) > 0 {
			return v, fmt.Errorf("missing %s (standard input is not a terminal, so init cannot ask): for example mailctl init -domain example.org -ip 203.0.113.10", strings.Join(missing, " and "))
		}
	}

	var err error
	if domain == "" {
		if domain, err = ask("Mail domain (the part after @)", "", func(s string) error { return checkDomainName("domain", s) }); err != nil {
			return v, err
		}
	}
	v.Domain = normalizeName(domain)
	if err := checkDomainName("-domain", v.Domain); err != nil {
		return v, err
	}

	if host == "" && e.IsTerminal {
		if host, err = ask("Server hostname (its EHLO and TLS name)", "mail."+v.Domain, func(s string) error { return checkDomainName("hostname", s) }); err != nil {
			return v, err
		}
	}
	if host == "" {
		host = "mail." + v.Domain
	}
	v.Host = normalizeName(host)
	if err := checkDomainName("-host", v.Host); err != nil {
		return v, err
	}

	if ip == "" {
		if ip, err = ask("Server public IPv4 address (and IPv6, comma-separated, if any)", "", func(s string) error { _, _, err := parseInitIPs(s); return err }); err != nil {
			return v, err
		}
	}
	if v.IPv4, v.IPv6, err = parseInitIPs(ip); err != nil {
		return v, err
	}

	if dns == "" && e.IsTerminal {
		if dns, err = ask("DNS provider ("+strings.Join(initDNSKinds, ", ")+")", initDNSKinds[0], checkDNSKind); err != nil {
			return v, err
		}
	}
	if dns == "" {
		dns = initDNSKinds[0]
	}
	v.DNS = strings.ToLower(strings.TrimSpace(dns))
	if err := checkDNSKind(v.DNS); err != nil {
		return v, err
	}

	if mailAt == "" && e.IsTerminal {
		q := "Does " + v.Domain + " receive mail elsewhere today? no, google (Workspace), microsoft (365), or the IMAP HOST:PORT of its provider"
		if mailAt, err = ask(q, "no", checkMailAt); err != nil {
			return v, err
		}
	}
	if err := checkMailAt(mailAt); err != nil {
		return v, err
	}
	switch m := strings.ToLower(strings.TrimSpace(mailAt)); m {
	case "", "no", "none":
	case "google":
		v.MailAt, v.MailAtName = m, "Google Workspace"
	case "microsoft":
		v.MailAt, v.MailAtName, v.SourceAddress = m, "Microsoft 365", "outlook.office365.com:993"
	default:
		host, _, _ := net.SplitHostPort(m)
		v.MailAt, v.MailAtName, v.SourceAddress = "imap", host, m
	}
	return v, nil
}

// checkMailAt accepts the answers of the current-mail question.
func checkMailAt(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "no", "none", "google", "microsoft":
		return nil
	}
	host, port, err := net.SplitHostPort(strings.TrimSpace(s))
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%q is none of no, google, microsoft or an IMAP HOST:PORT (imap.example.net:993)", s)
	}
	return nil
}

func checkDNSKind(s string) error {
	for _, k := range initDNSKinds {
		if strings.EqualFold(strings.TrimSpace(s), k) {
			return nil
		}
	}
	return fmt.Errorf("-dns %q: want one of %s", s, strings.Join(initDNSKinds, ", "))
}

// normalizeName lowercases a DNS name and drops a final dot.
func normalizeName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// checkDomainName reports whether s is a fully qualified host or domain name
// in the letters-digits-hyphen syntax of RFC 1123 section 2.1, with at least
// two labels and a top-level label that is not all digits.
func checkDomainName(what, s string) error {
	s = normalizeName(s)
	bad := func(why string) error { return fmt.Errorf("%s %q is not a valid domain name: %s", what, s, why) }
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > 253:
		return bad("longer than 253 characters")
	case strings.Contains(s, "@"):
		return bad("give the domain only, without a user@ part")
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return bad("it needs at least two labels, like example.org")
	}
	for _, l := range labels {
		switch {
		case l == "":
			return bad("empty label")
		case len(l) > 63:
			return bad("label longer than 63 characters")
		case l[0] == '-' || l[len(l)-1] == '-':
			return bad(fmt.Sprintf("label %q starts or ends with a hyphen", l))
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return bad(fmt.Sprintf("character %q (only letters, digits and hyphens; write internationalised names in their xn-- form)", c))
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return bad("the last label is all digits (an IP address?)")
	}
	return nil
}

// parseInitIPs parses one IPv4 and/or one IPv6 address, comma-separated.
func parseInitIPs(s string) (v4, v6 string, err error) {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return "", "", fmt.Errorf("-ip %q is not an IPv4 or IPv6 address", f)
		}
		if a.IsUnspecified() || a.IsMulticast() {
			return "", "", fmt.Errorf("-ip %q cannot be a server's address", f)
		}
		a = a.Unmap()
		if a.Is4() {
			if v4 != "" {
				return "", "", fmt.Errorf("-ip %q: two IPv4 addresses (one server has one IPv4 and at most one IPv6)", s)
			}
			v4 = a.String()
		} else {
			if v6 != "" {
				return "", "", fmt.Errorf("-ip %q: two IPv6 addresses (one server has one IPv4 and at most one IPv6)", s)
			}
			v6 = a.String()
		}
	}
	if v4 == "" {
		return "", "", fmt.Errorf("-ip %q: the server's IPv4 address is required (an IPv6 address may follow, comma-separated)", s)
	}
	return v4, v6, nil
}

// initServerLabel names the server block after the first label of its host
// name when that is an HCL identifier (it is used in references such as
// server.mail), and "mx1" otherwise.
func initServerLabel(host string) string {
	l, _, _ := strings.Cut(host, ".")
	if l == "" || !(l[0] >= 'a' && l[0] <= 'z') {
		return "mx1"
	}
	return l
}

// initPlaceholderHash is config.PlaceholderPasswordHash: the scaffold is a
// valid configuration, yet nobody can log in before the hash is replaced
// with the output of `mailctl passwd`, and validate warns until then.
func initPlaceholderHash() (string, error) {
	return config.PlaceholderPasswordHash, nil
}

func renderInit(v initValues) ([]byte, error) {
	var buf bytes.Buffer
	if err := initTemplate.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("render mail.hcl: %w", err)
	}
	return buf.Bytes(), nil
}

var initTemplate = template.Must(template.New("mail.hcl").Parse(`# mail.hcl: the mail setup of {{.Domain}}, written by "mailctl init".
#
# Every *.hcl file of this directory is read and merged. Run
#   mailctl validate   to check this file (no network),
#   mailctl plan       to see what would change (DNS records, PTR, server),
#   mailctl apply      to make it so, then verify the result.
# Secrets never live in this file: env("NAME") reads them from the
# environment when mailctl runs. The full reference is docs/config.md.

# Who hosts the DNS zone of {{.Domain}}. mailctl only touches the mail records
# (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, autoconfig, SRV), never the others.
#
{{- if eq .DNS "cloudflare"}}
# An API token with the Zone:DNS:Edit permission on the zone.
provider "cloudflare" "main" {
  api_token = env("CLOUDFLARE_API_TOKEN")
}
{{- else if eq .DNS "ovh"}}
# OVH API credentials (https://eu.api.ovh.com/createToken/) with GET, POST,
# PUT and DELETE on /domain/zone/*.
provider "ovh" "main" {
  endpoint           = "ovh-eu"
  application_key    = env("OVH_APPLICATION_KEY")
  application_secret = env("OVH_APPLICATION_SECRET")
  consumer_key       = env("OVH_CONSUMER_KEY")
}
{{- else if eq .DNS "rfc2136"}}
# Any name server that accepts RFC 2136 dynamic updates signed with a TSIG
# key (BIND, Knot, PowerDNS); it must also allow zone transfers (AXFR) for
# that key, which is how mailctl reads the current records.
provider "rfc2136" "main" {
  server    = "ns1.{{.Domain}}:53"
  tsig_name = "mailctl."
  tsig_alg  = "hmac-sha256"
  tsig_key  = env("TSIG_SECRET")
}
{{- else if eq .DNS "zonefile"}}
# Writes zones/{{.Domain}}.zone for a name server that you run yourself
# (Knot, BIND, NSD): mailctl keeps the records it owns up to date in it.
provider "zonefile" "main" {
  dir = "zones"
}
{{- end}}

# The mail server: the same mailctl binary, deployed over SSH and run as
# "mailctl serve".
server "{{.Server}}" {
  hostname = "{{.Host}}" # EHLO name, TLS certificate name, A/AAAA and PTR target
  ipv4     = "{{.IPv4}}"
{{- if .IPv6}}
  ipv6     = "{{.IPv6}}"
{{- end}}

  # Reverse DNS (PTR) of the IP addresses, set through your hosting
  # provider's API. Without it, many receivers treat your mail as spam.
{{- if eq .DNS "ovh"}}
  # For a server hosted at OVH, the provider above sets it too: uncomment
  # ptr = provider.ovh.main
{{- else}}
  # For a server at Hetzner Cloud, declare
  #   provider "hetzner" "cloud" { token = env("HCLOUD_TOKEN") }
  # and uncomment (or set the PTR in your hosting panel):
  # ptr = provider.hetzner.cloud
{{- end}}

  ssh {
    user        = "root"
    known_hosts = "~/.ssh/known_hosts" # the server's key must be in it
    # Or pin the key: host_key = "ssh-ed25519 AAAA..." (ssh-keyscan prints it).
    # The address defaults to the IPv4 address, port 22; the identity to
    # ssh-agent, then ~/.ssh/id_*.
  }

  tls {
    # Certificates from Let's Encrypt, renewed automatically. Or give
    # cert_file and key_file.
    acme_email = "postmaster@{{.Domain}}"
  }

  # To send through a smarthost (SES, Mailgun...) instead of delivering
  # directly, uncomment:
  # relay {
  #   address  = "email-smtp.eu-west-1.amazonaws.com:587"
  #   username = env("RELAY_USER")
  #   password = env("RELAY_PASSWORD")
  # }
}

domain "{{.Domain}}" {
  dns    = provider.{{.DNS}}.main
  server = server.{{.Server}}

  # DKIM signing keys are generated on the server (an ed25519 and an
  # rsa-2048 key); their public halves are published under this selector.
  dkim {
    selector = "{{.Selector}}"
  }
  # SPF: the server's addresses are included; "~all" soft-fails the rest.
  # Switch to "-all" once everything sends through this server.
  spf {
    all = "~all"
  }
  # DMARC: start with "none" and read the reports, then move to
  # "quarantine" and "reject".
  dmarc {
    policy = "none"
    rua    = ["mailto:postmaster@{{.Domain}}"]
  }
  # MTA-STS (RFC 8461): "testing" first, "enforce" when the reports are clean.
  mta_sts {
    mode = "testing"
  }
  # TLS reporting (RFC 8460).
  tls_rpt {
    rua = ["mailto:postmaster@{{.Domain}}"]
  }
}

# A mailbox. The password_hash below is a placeholder that no password
# matches (validate warns about it). Run "mailctl passwd", type the real
# password and paste the printed hash here.
user "admin@{{.Domain}}" {
  name          = "Administrator"
  password_hash = "{{.PlaceholderHash}}"
  quota         = "10GiB"
}

# Required by RFC 5321: mail to postmaster must reach a person.
alias "postmaster@{{.Domain}}" {
  to = ["admin@{{.Domain}}"]
}
{{- if .MailAt}}

# {{.Domain}} receives its mail at {{.MailAtName}} today. This migration
# moves it without losing any. In phase "presync" the MX stay where they
# are (their TTL is lowered) while "mailctl migrate" copies the mailboxes;
# then set phase = "cutover", plan, apply (the MX move to this server) and
# migrate again for what arrived meanwhile; then phase = "done".
# Without this block, plan warns and apply refuses to move the MX.
# Runbook: the migration section of docs/config.md.
migration "{{.MailAt}}" {
  phase = "presync"
{{- if .SourceAddress}}

  source {
    address = "{{.SourceAddress}}"
  }
{{- else}}

  # source { address = "imap.gmail.com:993" } is the default.
{{- end}}

  # One block per mailbox to copy. password: the account's password at
  # {{.MailAtName}} (an app password; or oauth2_token_command for XOAUTH2).
  # target_password: the password behind the user's password_hash above.
  user "admin@{{.Domain}}" {
    password        = env("ADMIN_SOURCE_PASSWORD")
    target_password = env("ADMIN_PASSWORD")
  }
}
{{- end}}
`))

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/internal/formatversion"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/remote"
)

func init() {
	register(&command{name: "status", synopsis: "show what the servers are doing and whether one needs attention (over SSH; the lab locally)", run: runStatus})
}

// Thresholds of mailctl status: past them a server needs attention (exit 2).
const (
	certWarnDays    = 14
	queueOldestWarn = 24 * time.Hour
	diskFreeWarnPct = 10
	quotaWarnPct    = 90
	// dkimPendingWarn: a new DKIM selector is published and activated by
	// the apply that generated it; pending longer means that apply was
	// interrupted or ran with -wait=0 and nothing finished it.
	dkimPendingWarn = 24 * time.Hour
)

const statusHelp = `For each server: its state, release and version, uptime, outbound queue
(count, oldest message, why messages wait), certificates, disk of the data
directory, mailbox sizes against quotas, each domain's DKIM selectors and their
rotation state, the last errors the server logged and the store records it
quarantined.

A server needs attention when it is not running, a certificate expires in
less than 14 days, the oldest queued message waits for more than a day, the
disk has less than 10 % free, a user is over 90 % of their quota, a new
DKIM selector waits for more than a day to be activated, or the store
quarantined records.

Exit status: 0 all is well, 2 a server needs attention, 1 on error (a server
that could not be reached or read is reported as "unknown", never as not
running).
`

// statusFormatVersion is the version of the -json document
// (docs/operations.md, docs/json.md).
const statusFormatVersion = formatversion.Current

// statusReport is the -json document.
type statusReport struct {
	FormatVersion formatversion.Version `json:"format_version"`
	CheckedAt     time.Time             `json:"checked_at"`
	Servers       []serverReport        `json:"servers"`
	// Attention is true when a server needs attention; Errors when one
	// could not be read.
	Attention bool `json:"attention"`
	Errors    bool `json:"errors"`
}

type serverReport struct {
	Server        string               `json:"server"`
	State         string               `json:"state"`
	Error         string               `json:"error,omitempty"`
	Release       string               `json:"release,omitempty"`
	Version       string               `json:"version,omitempty"`
	Hostname      string               `json:"hostname,omitempty"`
	StartedAt     *time.Time           `json:"started_at,omitempty"`
	UptimeSeconds int64                `json:"uptime_seconds,omitempty"`
	Queue         *queueReport         `json:"queue,omitempty"`
	Certificates  []certReport         `json:"certificates,omitempty"`
	Disk          *diskReport          `json:"disk,omitempty"`
	Users         []userReport         `json:"users,omitempty"`
	DKIM          []dkimReport         `json:"dkim,omitempty"`
	LastErrors    []contract.LogRecord `json:"last_errors,omitempty"`
	Quarantine    []quarantineReport   `json:"store_quarantine,omitempty"`
	Spam          *contract.SpamStatus `json:"spam,omitempty"`
	Attention     []string             `json:"attention"`
}

type queueReport struct {
	Messages         int                 `json:"messages"`
	Oldest           *time.Time          `json:"oldest,omitempty"`
	OldestAgeSeconds int64               `json:"oldest_age_seconds,omitempty"`
	Deferrals        []contract.Deferral `json:"deferrals"`
}

type certReport struct {
	Names      []string  `json:"names"`
	NotAfter   time.Time `json:"not_after"`
	DaysLeft   int       `json:"days_left"`
	SelfSigned bool      `json:"self_signed"`
}

type diskReport struct {
	Path        string  `json:"path"`
	TotalBytes  int64   `json:"total_bytes"`
	UsedBytes   int64   `json:"used_bytes"`
	FreeBytes   int64   `json:"free_bytes"`
	FreePercent float64 `json:"free_percent"`
}

type userReport struct {
	Address    string  `json:"address"`
	Messages   int     `json:"messages"`
	UsedBytes  int64   `json:"used_bytes"`
	QuotaBytes int64   `json:"quota_bytes"`
	QuotaUsed  float64 `json:"quota_used_percent,omitempty"`
}

// dkimReport is one DKIM selector of a domain (its ed25519 and rsa keys
// together) and its place in a rotation.
type dkimReport struct {
	Domain   string     `json:"domain"`
	Selector string     `json:"selector"`
	State    string     `json:"state"`
	Created  *time.Time `json:"created,omitempty"`
	Retired  *time.Time `json:"retired,omitempty"`
}

type quarantineReport struct {
	Time    time.Time `json:"time"`
	User    string    `json:"user"`
	Kind    string    `json:"kind"`
	Mailbox string    `json:"mailbox,omitempty"`
	UID     uint32    `json:"uid,omitempty"`
	Error   string    `json:"error"`
	File    string    `json:"file"`
}

func runStatus(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "status", "[-server NAME]... [-json] [-accept-new-host-key] [-timeout 30s]")
	setUsageFooter(fs, func(w io.Writer) { fmt.Fprint(w, statusHelp) })
	asJSON := fs.Bool("json", false, "print the status as JSON (format in docs/operations.md)")
	var names listFlag
	fs.Var(&names, "server", "show only the server `NAME` (repeatable or comma-separated; default: every server)")
	acceptNew := fs.Bool("accept-new-host-key", false, "trust and record the SSH host key of a server contacted for the first time (a changed key is always refused)")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit to reach and read each server")
	vars := addVarFlag(fs)
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "status takes no arguments (got %q); use -server NAME to select servers", strings.Join(fs.Args(), " "))
	}
	cfg := loadConfig(e, vars)
	if cfg == nil {
		return exitError
	}
	servers, err := selectServers(cfg, names)
	if err != nil {
		return errorf(e, "%v", err)
	}
	rep := statusReport{FormatVersion: statusFormatVersion, CheckedAt: time.Now().UTC().Truncate(time.Second), Servers: []serverReport{}}
	for _, s := range servers {
		sctx, cancel := context.WithTimeout(ctx, *timeout)
		obs, err := observe(sctx, e, cfg, s, *acceptNew)
		cancel()
		if ctx.Err() != nil {
			return errorf(e, "status: %v", ctx.Err())
		}
		rep.Servers = append(rep.Servers, buildServerReport(s.Name, obs, err, rep.CheckedAt))
	}
	for _, s := range rep.Servers {
		rep.Errors = rep.Errors || s.State == remote.StateUnknown
		rep.Attention = rep.Attention || len(s.Attention) > 0
	}
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return errorf(e, "status: %v", err)
		}
	} else {
		printStatusReport(e.Stdout, rep)
	}
	switch {
	case rep.Errors:
		return exitError
	case rep.Attention:
		return 2
	}
	return exitOK
}

// selectServers returns the servers named (every server when none is).
func selectServers(cfg *config.Config, names []string) ([]*config.Server, error) {
	if len(names) == 0 {
		return cfg.Servers, nil
	}
	var all []string
	for _, s := range cfg.Servers {
		all = append(all, s.Name)
	}
	var out []*config.Server
	for _, n := range names {
		s := cfg.ServerByName(n)
		if s == nil {
			return nil, fmt.Errorf("no server %q in the configuration (servers: %s)", n, strings.Join(all, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// observe reads server s: the lab on this machine, a VPS over SSH.
func observe(ctx context.Context, e *env, cfg *config.Config, s *config.Server, acceptNew bool) (remote.Observation, error) {
	if s.Local != nil {
		return remote.Lab{Dir: desired.LocalDir(cfg, s)}.Observe(ctx), nil
	}
	conn, err := target.Open(ctx, cfg, s, target.Options{AcceptNewHostKey: acceptNew, Passphrase: passphrasePrompt(e), Logger: logger(e)})
	if err != nil {
		return remote.Observation{}, err
	}
	defer conn.Close()
	return remote.VPS.Observe(ctx, conn.Target())
}

// buildServerReport turns what was read of a server into its report and
// the reasons it needs attention, as of now.
func buildServerReport(name string, obs remote.Observation, err error, now time.Time) serverReport {
	r := serverReport{Server: "server." + name, State: obs.State, Release: obs.Release, Attention: []string{}}
	if err != nil {
		r.State, r.Error = remote.StateUnknown, err.Error()
		return r
	}
	switch obs.State {
	case remote.StateNotDeployed:
		r.Attention = append(r.Attention, "not deployed (run mailctl apply)")
		return r
	case remote.StateStopped:
		r.Attention = append(r.Attention, "not running")
	}
	if obs.Err != nil {
		r.Error = oneLine(obs.Err.Error())
	}
	if obs.State != remote.StateRunning {
		return r
	}
	var st contract.Status
	if err := json.Unmarshal(obs.Status, &st); err != nil {
		r.State, r.Error = remote.StateUnknown, "decode the server's status: "+err.Error()
		return r
	}
	r.Version, r.Hostname = st.Version, st.Hostname
	if !st.StartedAt.IsZero() {
		t := st.StartedAt.UTC()
		r.StartedAt = &t
		r.UptimeSeconds = int64(now.Sub(t) / time.Second)
	}
	if q := st.Queue; q != nil {
		qr := &queueReport{Messages: q.Messages, Oldest: q.Oldest, Deferrals: q.Deferrals}
		if qr.Deferrals == nil {
			qr.Deferrals = []contract.Deferral{}
		}
		if q.Oldest != nil {
			age := now.Sub(*q.Oldest)
			qr.OldestAgeSeconds = int64(age / time.Second)
			if age > queueOldestWarn {
				r.Attention = append(r.Attention, fmt.Sprintf("the oldest queued message waits for %s (over %s)", roundAge(age), roundAge(queueOldestWarn)))
			}
		}
		r.Queue = qr
	} else {
		r.Queue = &queueReport{Messages: st.QueueMessages, Deferrals: []contract.Deferral{}}
	}
	for _, c := range st.Certificates {
		days := int(c.NotAfter.Sub(now).Hours() / 24)
		r.Certificates = append(r.Certificates, certReport{Names: c.Names, NotAfter: c.NotAfter.UTC(), DaysLeft: days, SelfSigned: c.SelfSigned})
		if c.NotAfter.Sub(now) < certWarnDays*24*time.Hour {
			r.Attention = append(r.Attention, fmt.Sprintf("certificate %s expires in %d days (%s)", strings.Join(c.Names, ", "), days, c.NotAfter.UTC().Format("2006-01-02")))
		}
	}
	if d := st.Disk; d != nil {
		dr := &diskReport{Path: d.Path, TotalBytes: d.TotalBytes, UsedBytes: d.UsedBytes, FreeBytes: d.FreeBytes}
		if d.TotalBytes > 0 {
			dr.FreePercent = percent(d.FreeBytes, d.TotalBytes)
			if dr.FreePercent < diskFreeWarnPct {
				r.Attention = append(r.Attention, fmt.Sprintf("disk of %s has %.1f %% free (%s)", d.Path, dr.FreePercent, bytesIEC(d.FreeBytes)))
			}
		}
		r.Disk = dr
	}
	for _, u := range st.Users {
		ur := userReport{Address: u.Address, Messages: u.Messages, UsedBytes: u.UsedBytes, QuotaBytes: u.QuotaBytes}
		if u.QuotaBytes > 0 {
			ur.QuotaUsed = percent(u.UsedBytes, u.QuotaBytes)
			if ur.QuotaUsed > quotaWarnPct {
				r.Attention = append(r.Attention, fmt.Sprintf("%s uses %.1f %% of their quota (%s of %s)", u.Address, ur.QuotaUsed, bytesIEC(u.UsedBytes), bytesIEC(u.QuotaBytes)))
			}
		}
		r.Users = append(r.Users, ur)
	}
	r.DKIM = dkimReports(st.DKIM)
	for _, k := range r.DKIM {
		if k.State == contract.DKIMStatePending && k.Created != nil && now.Sub(*k.Created) > dkimPendingWarn {
			r.Attention = append(r.Attention, fmt.Sprintf("DKIM selector %s of %s is pending since %s, not signing: run mailctl apply to publish and activate it",
				k.Selector, k.Domain, k.Created.Format("2006-01-02")))
		}
	}
	r.LastErrors = st.LastErrors
	for _, q := range st.Quarantine {
		r.Quarantine = append(r.Quarantine, quarantineReport{Time: q.Time, User: q.User, Kind: q.Kind, Mailbox: q.Mailbox, UID: q.UID, Error: q.Error, File: q.File})
	}
	if n := len(st.Quarantine); n > 0 {
		r.Attention = append(r.Attention, fmt.Sprintf("the store quarantined %s (see store/quarantine/ in the data directory)", plural(n, "unreadable record")))
	}
	r.Spam = st.Spam
	if a := spamAttention(st.Spam); a != "" {
		r.Attention = append(r.Attention, a)
	}
	return r
}

// dkimReports groups the server's DKIM keys by domain and selector (a
// selector's ed25519 and rsa keys share their state), in the server's
// order.
func dkimReports(keys []contract.DKIMKey) []dkimReport {
	var out []dkimReport
	seen := map[[2]string]bool{}
	for _, k := range keys {
		sel := contract.DKIMBase(k.Selector)
		id := [2]string{k.Domain, sel}
		if seen[id] {
			continue
		}
		seen[id] = true
		r := dkimReport{Domain: k.Domain, Selector: sel, State: k.State}
		if !k.Created.IsZero() {
			t := k.Created.UTC()
			r.Created = &t
		}
		if !k.Retired.IsZero() {
			t := k.Retired.UTC()
			r.Retired = &t
		}
		out = append(out, r)
	}
	return out
}

// percent is 100*a/b rounded to one decimal.
func percent(a, b int64) float64 {
	return float64(int64(1000*float64(a)/float64(b)+0.5)) / 10
}

// roundAge prints a duration in days, hours or minutes.
func roundAge(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	case d >= time.Minute:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	}
	return fmt.Sprintf("%d seconds", int(d.Seconds()))
}

// plural is "1 message", "2 messages".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// printStatusReport prints the report for a terminal.
func printStatusReport(w io.Writer, rep statusReport) {
	for i, s := range rep.Servers {
		if i > 0 {
			fmt.Fprintln(w)
		}
		head := s.Server + ": " + s.State
		if s.Release != "" {
			head += ", release " + s.Release
		}
		if s.StartedAt != nil {
			head += fmt.Sprintf(", up %s (since %s)", roundAge(time.Duration(s.UptimeSeconds)*time.Second), s.StartedAt.Format(time.RFC3339))
		}
		fmt.Fprintln(w, head)
		if s.Error != "" {
			fmt.Fprintf(w, "  error        %s\n", s.Error)
		}
		if s.Version != "" {
			fmt.Fprintf(w, "  version      mailctl %s on %s\n", s.Version, s.Hostname)
		}
		if q := s.Queue; q != nil {
			line := plural(q.Messages, "message")
			if q.Oldest != nil {
				line += fmt.Sprintf(", oldest waits for %s", roundAge(time.Duration(q.OldestAgeSeconds)*time.Second))
			}
			fmt.Fprintf(w, "  queue        %s\n", line)
			for _, d := range q.Deferrals {
				fmt.Fprintf(w, "    %d × %s\n", d.Messages, d.Reason)
			}
		}
		for _, c := range s.Certificates {
			kind := ""
			if c.SelfSigned {
				kind = " (self-signed)"
			}
			fmt.Fprintf(w, "  certificate  %s%s: expires %s (%d days)\n", strings.Join(c.Names, ", "), kind, c.NotAfter.Format("2006-01-02"), c.DaysLeft)
		}
		if d := s.Disk; d != nil {
			fmt.Fprintf(w, "  disk         %s free of %s (%.1f %%), %s\n", bytesIEC(d.FreeBytes), bytesIEC(d.TotalBytes), d.FreePercent, d.Path)
		}
		for _, u := range s.Users {
			quota := "no quota"
			if u.QuotaBytes > 0 {
				quota = fmt.Sprintf("%.1f %% of %s", u.QuotaUsed, bytesIEC(u.QuotaBytes))
			}
			fmt.Fprintf(w, "  user         %s: %d messages, %s (%s)\n", u.Address, u.Messages, bytesIEC(u.UsedBytes), quota)
		}
		for _, k := range s.DKIM {
			line := k.State
			switch {
			case k.Retired != nil:
				line += " since " + k.Retired.Format("2006-01-02")
			case k.Created != nil:
				line += ", created " + k.Created.Format("2006-01-02")
			}
			fmt.Fprintf(w, "  dkim         %s %s: %s\n", k.Domain, k.Selector, line)
		}
		if s.State == remote.StateRunning {
			if len(s.LastErrors) == 0 {
				fmt.Fprintln(w, "  last errors  none")
			} else {
				fmt.Fprintf(w, "  last errors  %d (newest last):\n", len(s.LastErrors))
				for _, l := range s.LastErrors {
					fmt.Fprintf(w, "    %s %s %s\n", l.Time.Format(time.RFC3339), l.Message, l.Attrs)
				}
			}
		}
		if s.Spam != nil {
			fmt.Fprintf(w, "  spam         %s\n", spamLine(s.Spam))
		}
		for _, q := range s.Quarantine {
			fmt.Fprintf(w, "  quarantined  %s %s %s: %s\n", q.File, q.Kind, q.User, q.Error)
		}
		for _, a := range s.Attention {
			fmt.Fprintf(w, "  ATTENTION    %s\n", a)
		}
	}
	fmt.Fprintln(w)
	switch {
	case rep.Errors:
		fmt.Fprintln(w, "Some servers could not be read (state unknown).")
	case rep.Attention:
		fmt.Fprintln(w, "Some servers need attention.")
	default:
		fmt.Fprintln(w, "All servers are running and need no attention.")
	}
}

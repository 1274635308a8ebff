package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/remote"
)

var statusNow = time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)

// healthyStatus is what a server that needs nothing reports.
func healthyStatus() contract.Status {
	oldest := statusNow.Add(-10 * time.Minute)
	return contract.Status{
		FormatVersion: contract.StatusFormatVersion, Version: "1.4.0", Hostname: "mail.example.org",
		StartedAt: statusNow.Add(-50 * time.Hour),
		Users: []contract.UserStatus{
			{Address: "alice@example.org", QuotaBytes: 1 << 30, UsedBytes: 300 << 20, Messages: 1200},
			{Address: "bob@example.org", UsedBytes: 5 << 20, Messages: 40},
		},
		TLSMode:       "acme",
		Certificates:  []contract.CertInfo{{Names: []string{"mail.example.org"}, NotAfter: statusNow.Add(60 * 24 * time.Hour)}},
		QueueMessages: 1,
		Queue: &contract.QueueStatus{Messages: 1, Oldest: &oldest, Deferrals: []contract.Deferral{
			{Reason: "example.net: 451 4.7.1 greylisted, try again later", Messages: 1}}},
		Disk: &contract.DiskStatus{Path: "/var/lib/mailctl", TotalBytes: 20 << 30, FreeBytes: 15 << 30, UsedBytes: 5 << 30},
		DKIM: []contract.DKIMKey{
			{Domain: "example.org", Selector: "mailctl-ed25519", Algorithm: "ed25519", State: contract.DKIMStateRetired,
				Created: statusNow.Add(-200 * 24 * time.Hour), Retired: statusNow.Add(-3 * 24 * time.Hour)},
			{Domain: "example.org", Selector: "mailctl-rsa", Algorithm: "rsa", State: contract.DKIMStateRetired,
				Created: statusNow.Add(-200 * 24 * time.Hour), Retired: statusNow.Add(-3 * 24 * time.Hour)},
			{Domain: "example.org", Selector: "mailctl-20261204-ed25519", Algorithm: "ed25519", State: contract.DKIMStateSigning,
				Created: statusNow.Add(-3 * 24 * time.Hour)},
			{Domain: "example.org", Selector: "mailctl-20261204-rsa", Algorithm: "rsa", State: contract.DKIMStateSigning,
				Created: statusNow.Add(-3 * 24 * time.Hour)},
		},
		LastErrors: []contract.LogRecord{},
		Quarantine: []contract.QuarantineEntry{},
	}
}

// troubledStatus crosses every threshold.
func troubledStatus() contract.Status {
	st := healthyStatus()
	oldest := statusNow.Add(-30 * time.Hour)
	st.Queue = &contract.QueueStatus{Messages: 3, Oldest: &oldest, Deferrals: []contract.Deferral{
		{Reason: "example.com: dial tcp 192.0.2.1:25: connect: connection timed out", Messages: 2},
		{Reason: "example.net: 421 4.3.2 too busy", Messages: 1}}}
	st.Certificates[0].NotAfter = statusNow.Add(10*24*time.Hour + time.Hour)
	st.Disk = &contract.DiskStatus{Path: "/var/lib/mailctl", TotalBytes: 20 << 30, FreeBytes: 1 << 30, UsedBytes: 19 << 30}
	st.Users[0].UsedBytes = 950 << 20
	st.LastErrors = []contract.LogRecord{{Time: statusNow.Add(-time.Hour), Level: "ERROR",
		Message: "reload failed; keeping the previous configuration", Attrs: `problems="[hostname is empty]"`}}
	for _, alg := range []string{"ed25519", "rsa"} {
		st.DKIM = append(st.DKIM, contract.DKIMKey{Domain: "example.org", Selector: "mailctl-20261205-" + alg, Algorithm: alg,
			State: contract.DKIMStatePending, Created: statusNow.Add(-49 * time.Hour)})
	}
	st.Quarantine = []contract.QuarantineEntry{{Time: statusNow.Add(-2 * time.Hour), User: "bob@example.org", Kind: "message",
		Mailbox: "INBOX", UID: 17, Error: "decode message record: unexpected EOF", File: "20261207T060000-1.json"}}
	return st
}

func observation(t *testing.T, st contract.Status) remote.Observation {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	// A quarantine entry as the store keeps it, with the raw record and
	// the cached header, which mailctl status must not pass on.
	b = bytes.ReplaceAll(b, []byte(`"file":"20261207T060000-1.json"`),
		[]byte(`"file":"20261207T060000-1.json","record":"cmF3","header":"Subject: secret"`))
	return remote.Observation{State: remote.StateRunning, Release: "1.4.0-0123456789ab", Unit: "active", Status: b}
}

func TestStatusAttention(t *testing.T) {
	r := buildServerReport("mx1", observation(t, healthyStatus()), nil, statusNow)
	if len(r.Attention) != 0 {
		t.Errorf("healthy server: attention %q, want none", r.Attention)
	}
	r = buildServerReport("mx1", observation(t, troubledStatus()), nil, statusNow)
	want := []string{
		"the oldest queued message waits for 30 hours (over 24 hours)",
		"certificate mail.example.org expires in 10 days (2026-12-17)",
		"disk of /var/lib/mailctl has 5.0 % free (1.0 GiB)",
		"alice@example.org uses 92.8 % of their quota (950.0 MiB of 1.0 GiB)",
		"DKIM selector mailctl-20261205 of example.org is pending since 2026-12-05, not signing: run mailctl apply to publish and activate it",
		"the store quarantined 1 unreadable record (see store/quarantine/ in the data directory)",
	}
	if strings.Join(r.Attention, "\n") != strings.Join(want, "\n") {
		t.Errorf("troubled server: attention\n%s\nwant\n%s", strings.Join(r.Attention, "\n"), strings.Join(want, "\n"))
	}
	// Just under each threshold: nothing.
	st := healthyStatus()
	o := statusNow.Add(-23 * time.Hour)
	st.Queue.Oldest = &o
	st.Certificates[0].NotAfter = statusNow.Add(14*24*time.Hour + time.Minute)
	st.Disk.FreeBytes = st.Disk.TotalBytes / 10
	st.Users[0].UsedBytes = st.Users[0].QuotaBytes * 9 / 10
	st.DKIM = append(st.DKIM, contract.DKIMKey{Domain: "example.org", Selector: "mailctl-20261207-ed25519", Algorithm: "ed25519",
		State: contract.DKIMStatePending, Created: statusNow.Add(-23 * time.Hour)})
	if r := buildServerReport("mx1", observation(t, st), nil, statusNow); len(r.Attention) != 0 {
		t.Errorf("server at the thresholds: attention %q, want none", r.Attention)
	}
	// Known not to run: attention; unreachable: unknown, not "not running".
	r = buildServerReport("mx1", remote.Observation{State: remote.StateStopped, Release: "r1", Err: errors.New("unit mailctl is failed")}, nil, statusNow)
	if r.State != "not running" || len(r.Attention) != 1 || r.Attention[0] != "not running" {
		t.Errorf("stopped server: %+v", r)
	}
	r = buildServerReport("mx1", remote.Observation{}, errors.New("connect to server.mx1 (192.0.2.7:22): ssh: connect to 192.0.2.7:22: i/o timeout"), statusNow)
	if r.State != "unknown" || !strings.Contains(r.Error, "i/o timeout") || len(r.Attention) != 0 {
		t.Errorf("unreachable server: %+v", r)
	}
}

// TestStatusJSONGolden pins the -json document of docs/operations.md.
func TestStatusJSONGolden(t *testing.T) {
	rep := statusReport{FormatVersion: statusFormatVersion, CheckedAt: statusNow, Servers: []serverReport{
		buildServerReport("mx1", observation(t, healthyStatus()), nil, statusNow),
		buildServerReport("mx2", observation(t, troubledStatus()), nil, statusNow),
		buildServerReport("mx3", remote.Observation{State: remote.StateStopped, Release: "1.3.0-fedcba987654", Unit: "failed", Err: errors.New("unit mailctl is failed")}, nil, statusNow),
		buildServerReport("mx4", remote.Observation{}, errors.New("connect to server.mx4 (192.0.2.9:22): ssh: connect to 192.0.2.9:22: i/o timeout"), statusNow),
	}}
	for _, s := range rep.Servers {
		rep.Errors = rep.Errors || s.State == remote.StateUnknown
		rep.Attention = rep.Attention || len(s.Attention) > 0
	}
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(js.String(), "secret") {
		t.Errorf("the status carries a quarantined record's header:\n%s", js.String())
	}
	golden(t, "status/report.json", js.Bytes())
	var text bytes.Buffer
	printStatusReport(&text, rep)
	golden(t, "status/report.txt", text.Bytes())
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.Local)
	for in, want := range map[string]time.Time{
		"90m":                       now.Add(-90 * time.Minute),
		"2h":                        now.Add(-2 * time.Hour),
		"3d":                        now.Add(-72 * time.Hour),
		"2026-12-06":                time.Date(2026, 12, 6, 0, 0, 0, 0, time.Local),
		"2026-12-06 07:30":          time.Date(2026, 12, 6, 7, 30, 0, 0, time.Local),
		"2026-12-06T07:30:00+01:00": time.Date(2026, 12, 6, 6, 30, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-2h", "2026-13-01"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
	}
}

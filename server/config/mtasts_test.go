package config_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/config"
)

// TestMTASTSMXLoad: a domain's mta_sts_mx list is read from server.json
// as written, in order, and absent stays empty (the hostname alone).
func TestMTASTSMXLoad(t *testing.T) {
	t.Parallel()
	c := valid(t)
	c.Domains[0].MTASTSMX = []string{"mx0.example.org", "mail.example.org"}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"mta_sts_mx":["mx0.example.org","mail.example.org"]`) {
		t.Errorf("server.json lacks the mta_sts_mx list: %s", b)
	}
	got, err := config.Load(write(t, string(b)))
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if want := []string{"mx0.example.org", "mail.example.org"}; !slices.Equal(got.Domains[0].MTASTSMX, want) {
		t.Errorf("mta_sts_mx = %q, want %q", got.Domains[0].MTASTSMX, want)
	}
	if got.Domains[1].MTASTSMX != nil {
		t.Errorf("mta_sts_mx of a domain without it = %q, want none", got.Domains[1].MTASTSMX)
	}
}

// TestMTASTSMXRules: each mistake in mta_sts_mx is one line naming the
// field, and a list naming this server is accepted.
func TestMTASTSMXRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mx   []string
		mode string
		want []string // each must appear; none: valid
	}{
		{name: "both servers", mx: []string{"mx1.example.org", "MAIL.example.org"}, mode: "enforce"},
		{name: "not a host name", mx: []string{"mail.example.org", "mx_2.example.org", "mx3"}, mode: "testing",
			want: []string{`domains[0].mta_sts_mx[1]: "mx_2.example.org" is not a host name`, `domains[0].mta_sts_mx[2]: "mx3" is not a host name`}},
		{name: "trailing dot", mx: []string{"mail.example.org."}, mode: "testing",
			want: []string{`domains[0].mta_sts_mx[0]: "mail.example.org." is not a host name: trailing dot`}},
		{name: "duplicate", mx: []string{"mail.example.org", "Mail.Example.org"}, mode: "testing",
			want: []string{"domains[0].mta_sts_mx[1]: duplicated host name mail.example.org"}},
		{name: "without this server", mx: []string{"mx1.example.org", "mx2.example.org"}, mode: "enforce",
			want: []string{"domains[0].mta_sts_mx: does not name this server's hostname mail.example.org"}},
		{name: "without a mode", mx: []string{"mail.example.org"}, mode: "",
			want: []string{"domains[0].mta_sts_mx: is set but mta_sts_mode is not"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := valid(t)
			c.Domains[0].MTASTSMX, c.Domains[0].MTASTSMode = tc.mx, tc.mode
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant a line containing %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "mta_sts_mx"); n != len(tc.want) {
				t.Errorf("Validate() = %v\nwant %d mta_sts_mx lines, got %d", err, len(tc.want), n)
			}
		})
	}
}

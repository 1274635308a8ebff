package testenv_test

import (
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
)

func TestStartRbldnsd(t *testing.T) {
	t.Parallel()
	addr := testenv.StartRbldnsd(t, map[string]string{
		"clean.test": "127.0.0.2\n",
		"dirty.test": "127.0.0.2\n203.0.113.10 :127.0.0.2:Spam trap hit\n",
	})
	c := &mdns.Client{Timeout: 2 * time.Second}
	for _, tc := range []struct {
		name   string
		listed bool
	}{
		{"2.0.0.127.clean.test.", true},
		{"10.113.0.203.clean.test.", false},
		{"10.113.0.203.dirty.test.", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := new(mdns.Msg)
			m.SetQuestion(tc.name, mdns.TypeA)
			r, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Fatal(err)
			}
			if listed := len(r.Answer) > 0; listed != tc.listed {
				t.Errorf("%s listed = %v (%v), want %v", tc.name, listed, r.Answer, tc.listed)
			}
		})
	}
}

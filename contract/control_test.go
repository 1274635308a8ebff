package contract_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/contract"
)

// TestQueryStatus serves a status document on a unix socket and reads it
// back as the provisioner's side does.
func TestQueryStatus(t *testing.T) {
	sock := filepath.Join(t.TempDir(), contract.ControlSocketName)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+contract.StatusPath, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"format_version":"1.0","hostname":"mx1.example.org","dkim":[{"domain":"example.org","selector":"s-ed25519","record":"v=DKIM1; k=ed25519; p=AAAA"}],"store_quarantine":[]}`))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	st, err := contract.QueryStatus(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Hostname != "mx1.example.org" || len(st.DKIM) != 1 || st.DKIM[0].Selector != "s-ed25519" || st.FormatVersion != contract.StatusFormatVersion {
		t.Errorf("QueryStatus = %+v", st)
	}

	_, err = contract.QueryStatus(context.Background(), filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "query control socket") {
		t.Errorf("QueryStatus of no server: %v, want a query control socket error", err)
	}
}

func TestLayout(t *testing.T) {
	for got, want := range map[string]string{
		contract.SelfSignedCert(contract.DefaultDataDir):                   "/var/lib/mailctl/tls/self-signed.crt",
		contract.SelfSignedCert(contract.LabDataDir("/lab/.m")):            "/lab/.m/data/tls/self-signed.crt",
		contract.DKIMKeyDir("/d"):                                          "/d/dkim",
		contract.DefaultControlSocket("/d"):                                "/d/control.sock",
		contract.LabConfigFile("/lab"):                                     "/lab/server.json",
		strings.Join(contract.StatusArgs("/etc/mailctl/server.json"), " "): "serve status -json -config /etc/mailctl/server.json",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

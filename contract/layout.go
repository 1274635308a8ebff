package contract

import "path"

// Paths on a server are slash-separated: the server runs on Linux.

// The layout of a deployed server (remote.VPS).
const (
	// DefaultDataDir holds the store, the queue, the keys and the
	// certificates; it is the server's data_dir when none is configured.
	DefaultDataDir = "/var/lib/mailctl"
	// VPSConfigFile is the configuration file apply writes.
	VPSConfigFile = "/etc/mailctl/server.json"
)

// The layout of a lab (a local server) under its directory.
const (
	labDataDir    = "data"
	labConfigFile = "server.json"
)

// LabDataDir is the data directory of the lab in dir.
func LabDataDir(dir string) string { return path.Join(dir, labDataDir) }

// LabConfigFile is the configuration file of the lab in dir.
func LabConfigFile(dir string) string { return path.Join(dir, labConfigFile) }

// Files and directories in the data directory.
const (
	// TLSDir holds the self-signed certificate and its key.
	TLSDir = "tls"
	// SelfSignedCertName and SelfSignedKeyName are the PEM certificate and
	// key of tls { self_signed = true }, generated on first start.
	SelfSignedCertName = "self-signed.crt"
	SelfSignedKeyName  = "self-signed.key"
	// DKIMDir holds the DKIM private keys (DKIMDir/<domain>/<selector>.pem).
	DKIMDir = "dkim"
	// ControlSocketName is the control socket when the configuration names
	// none.
	ControlSocketName = "control.sock"
)

// SelfSignedCert is the path of the self-signed certificate under dataDir.
func SelfSignedCert(dataDir string) string {
	return path.Join(dataDir, TLSDir, SelfSignedCertName)
}

// SelfSignedKey is the path of the self-signed certificate's key under
// dataDir.
func SelfSignedKey(dataDir string) string {
	return path.Join(dataDir, TLSDir, SelfSignedKeyName)
}

// DKIMKeyDir is the directory of the DKIM keys under dataDir.
func DKIMKeyDir(dataDir string) string { return path.Join(dataDir, DKIMDir) }

// DefaultControlSocket is the control socket under dataDir.
func DefaultControlSocket(dataDir string) string { return path.Join(dataDir, ControlSocketName) }

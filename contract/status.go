package contract

import (
	"time"

	"github.com/mailctl/mailctl/internal/formatversion"
)

// StatusFormatVersion is the version of the Status JSON document
// (docs/json.md).
const StatusFormatVersion = formatversion.Current

// Status is what the control socket reports: the state that `mailctl plan`
// reads back from a running server, and what `mailctl status` judges.
type Status struct {
	FormatVersion formatversion.Version `json:"format_version"`
	Version       string                `json:"version"`
	// ConfigDigest is config.Config.Digest() of the configuration in use.
	ConfigDigest string       `json:"config_digest"`
	ConfigPath   string       `json:"config_path"`
	Hostname     string       `json:"hostname"`
	StartedAt    time.Time    `json:"started_at"`
	LastReload   *ReloadState `json:"last_reload,omitempty"`
	// RestartNeeded names the settings changed since start that only a
	// restart applies (listen, hostname, limits, ...).
	RestartNeeded []string `json:"restart_needed,omitempty"`
	// RestartDigests are config.Config.RestartDigests of the configuration
	// the server was started with: the provisioner compares them with the
	// configuration it installs to decide between reload and restart.
	RestartDigests map[string]string `json:"restart_digests,omitempty"`
	Users          []UserStatus      `json:"users"`
	// DKIM lists the public keys of every configured selector, signing
	// and previous ones, for the provisioner to publish.
	DKIM          []DKIMKey         `json:"dkim"`
	TLSMode       string            `json:"tls_mode"`
	Certificates  []CertInfo        `json:"certificates"`
	StoreBytes    int64             `json:"store_bytes"`
	QueueMessages int               `json:"queue_messages"`
	Listeners     map[string]string `json:"listeners"`
	Domains       []string          `json:"domains"`
	MTASTS        map[string]string `json:"mta_sts_ids,omitempty"`

	// Quarantine lists the index records that the store could not read
	// and moved to its quarantine directory (store.Open): an operator
	// should look at them.
	Quarantine []QuarantineEntry `json:"store_quarantine"`

	// For mailctl status: the outbound queue's age and deferral reasons,
	// the data directory's disk, the last errors logged.
	Queue      *QueueStatus `json:"queue,omitempty"`
	Disk       *DiskStatus  `json:"disk,omitempty"`
	LastErrors []LogRecord  `json:"last_errors"`

	// Spam is the rspamd filter's state; nil when not configured.
	Spam *SpamStatus `json:"spam,omitempty"`
}

// ReloadState is the outcome of the last SIGHUP.
type ReloadState struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// UserStatus is one mailbox owner.
type UserStatus struct {
	Address    string `json:"address"`
	QuotaBytes int64  `json:"quota_bytes"`
	UsedBytes  int64  `json:"used_bytes"`
	Messages   int    `json:"messages"`
	// Password fingerprints the user's password hash and password scopes,
	// AppPasswords each app password's hash and scopes by name
	// (server/config User.Credentials): a plan shows a credential change
	// without any hash.
	Password     string            `json:"password_fingerprint,omitempty"`
	AppPasswords map[string]string `json:"app_password_fingerprints,omitempty"`
}

// DKIMKey is a public key to publish as <selector>._domainkey.<domain> TXT.
type DKIMKey struct {
	Domain    string `json:"domain"`
	Selector  string `json:"selector"`
	Algorithm string `json:"algorithm"`
	PublicKey string `json:"public_key"`
	Record    string `json:"record"`
	// State is the selector's place in a rotation: DKIMStateSigning,
	// DKIMStatePending (new, to publish before it signs), DKIMStateRetired
	// (published, no longer signing, since Retired) or DKIMStatePublished
	// (a configured previous selector).
	State   string    `json:"state"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"`
}

// CertInfo describes one certificate in use.
type CertInfo struct {
	Names      []string  `json:"names"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	Issuer     string    `json:"issuer"`
	SelfSigned bool      `json:"self_signed"`
}

// QuarantineEntry describes a record the store moved out of its index
// because it could not read it.
type QuarantineEntry struct {
	Time      time.Time `json:"time"`
	User      string    `json:"user"`
	Kind      string    `json:"kind"` // "message", "mailbox" or "user"
	Mailbox   string    `json:"mailbox,omitempty"`
	MailboxID uint64    `json:"mailbox_id,omitempty"`
	UID       uint32    `json:"uid,omitempty"`
	Error     string    `json:"error"`
	File      string    `json:"file"`                // of this entry, in the quarantine directory
	BodyFile  string    `json:"body_file,omitempty"` // of the message body, if saved
}

// QueueStatus summarises the outbound queue.
type QueueStatus struct {
	Messages int `json:"messages"`
	// Oldest is when the oldest queued message was accepted.
	Oldest *time.Time `json:"oldest,omitempty"`
	// Deferrals are the last delivery errors of the queued messages,
	// most frequent first, at most five of them.
	Deferrals []Deferral `json:"deferrals"`
}

// Deferral is one reason why queued messages wait.
type Deferral struct {
	Reason   string `json:"reason"`
	Messages int    `json:"messages"`
}

// DiskStatus is the file system that holds the data directory.
type DiskStatus struct {
	Path       string `json:"path"`
	TotalBytes int64  `json:"total_bytes"`
	// FreeBytes is what the server may still write (the blocks reserved
	// for root are not counted).
	FreeBytes int64 `json:"free_bytes"`
	UsedBytes int64 `json:"used_bytes"`
}

// LogRecord is one error the server logged.
type LogRecord struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Message string    `json:"message"`
	// Attrs are the record's attributes as key=value pairs.
	Attrs string `json:"attrs,omitempty"`
}

// SpamStatus is the rspamd filter of port 25 (server/spam), when
// configured.
type SpamStatus struct {
	URL      string `json:"url"`
	Scanned  int64  `json:"scanned"`
	Rejected int64  `json:"rejected"`
	Junk     int64  `json:"junk"`
	// Unscanned counts the messages accepted without a scan because
	// rspamd could not be reached.
	Unscanned int64 `json:"unscanned"`
	// UnreachableSince is set while scans fail: since the first failure
	// after the last success.
	UnreachableSince *time.Time `json:"unreachable_since,omitempty"`
	LastError        string     `json:"last_error,omitempty"`
	// Learned and LearnFailures count the messages posted to rspamd's
	// controller after a move into or out of Junk.
	Learned       int64 `json:"learned"`
	LearnFailures int64 `json:"learn_failures"`
}

package remote

import (
	"fmt"
	"strings"
)

// UnitOptions are the paths that the systemd unit refers to.
type UnitOptions struct {
	Binary     string // default /opt/mailctl/current/mailctl
	ConfigFile string // default /etc/mailctl/server.json
	DataDir    string // default /var/lib/mailctl
	User       string // default mailctl
}

// Unit returns the text of mailctl.service: the server runs as an
// unprivileged user that may bind ports below 1024, in a read-only view of
// the system except its data directory, with the systemd sandboxing that a
// mail server does not need to escape (see systemd.exec(5)).
func Unit(o UnitOptions) string {
	if o.Binary == "" {
		o.Binary = VPS.Binary()
	}
	if o.ConfigFile == "" {
		o.ConfigFile = VPS.ConfigFile
	}
	if o.DataDir == "" {
		o.DataDir = VPS.DataDir
	}
	if o.User == "" {
		o.User = ServiceUser
	}
	lines := []string{
		"# Written by mailctl apply; changes are overwritten at the next apply.",
		"[Unit]",
		"Description=mailctl mail server (SMTP, IMAP, MTA-STS)",
		"Documentation=https://github.com/mailctl/mailctl",
		"After=network-online.target",
		"Wants=network-online.target",
		"",
		"[Service]",
		"Type=simple",
		"User=" + o.User,
		"Group=" + o.User,
		fmt.Sprintf("ExecStart=%s serve -config %s", o.Binary, o.ConfigFile),
		"ExecReload=/bin/kill -HUP $MAINPID",
		"Restart=on-failure",
		"RestartSec=2s",
		"TimeoutStopSec=30s",
		"LimitNOFILE=65536",
		"UMask=0077",
		"WorkingDirectory=" + o.DataDir,
		"",
		"# Ports 25, 465, 587, 993, 143 and 443 without running as root.",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
		"NoNewPrivileges=yes",
		"",
		"# Sandbox: the whole system read-only except the data directory.",
		"ProtectSystem=strict",
		"ReadWritePaths=" + o.DataDir,
		"ProtectHome=yes",
		"PrivateTmp=yes",
		"PrivateDevices=yes",
		"ProtectKernelTunables=yes",
		"ProtectKernelModules=yes",
		"ProtectKernelLogs=yes",
		"ProtectControlGroups=yes",
		"ProtectClock=yes",
		"ProtectHostname=yes",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"RestrictNamespaces=yes",
		"RestrictRealtime=yes",
		"RestrictSUIDSGID=yes",
		"LockPersonality=yes",
		"MemoryDenyWriteExecute=yes",
		"SystemCallArchitectures=native",
		"SystemCallFilter=@system-service",
		"SystemCallErrorNumber=EPERM",
		"",
		"[Install]",
		"WantedBy=multi-user.target",
	}
	return strings.Join(lines, "\n") + "\n"
}

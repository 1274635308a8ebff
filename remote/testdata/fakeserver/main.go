// Command fakeserver stands in for "mailctl serve" in the deploy tests: it
// reads a JSON config {"banner_ports":[...],"listen_ports":[...]}, greets
// with an SMTP 220 line on the banner ports, accepts connections on the
// listen ports, rereads its config on SIGHUP and exits on SIGTERM. Build
// it with -ldflags "-X main.build=N" for distinct checksums and
// "-X main.mode=broken" for a release that exits at once.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

var (
	build = "1"
	mode  = "ok"
)

type config struct {
	BannerPorts []int `json:"banner_ports"`
	ListenPorts []int `json:"listen_ports"`
}

func main() {
	args := os.Args[1:]
	if len(args) < 3 || args[0] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: fakeserver serve [status -json] -config FILE")
		os.Exit(2)
	}
	if mode == "broken" {
		fmt.Fprintln(os.Stderr, "fakeserver: broken build "+build+", exiting")
		os.Exit(3)
	}
	if args[1] == "status" {
		cfg := args[len(args)-1]
		b, err := os.ReadFile(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out, _ := json.Marshal(map[string]any{"format_version": 1, "version": build, "config_bytes": len(b)})
		fmt.Println(string(out))
		return
	}
	// The lab tests check what the server inherits.
	fmt.Fprintln(os.Stderr, "fakeserver env:", strings.Join(os.Environ(), " "))
	path := args[2]
	var c config
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeserver: config:", err)
		os.Exit(1)
	}
	for _, p := range c.BannerPorts {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakeserver:", err)
			os.Exit(1)
		}
		go serve(l, "220 fake ESMTP build "+build+"\r\n")
	}
	for _, p := range c.ListenPorts {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakeserver:", err)
			os.Exit(1)
		}
		go serve(l, "")
	}
	// In the working directory (the data directory under systemd).
	os.WriteFile("fakeserver.started", []byte(build+"\n"), 0o600)
	fmt.Printf("fakeserver build %s started, pid %d\n", build, os.Getpid())
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	reloads := 0
	for s := range sig {
		if s == syscall.SIGHUP {
			reloads++
			os.WriteFile("fakeserver.reloads", []byte(strconv.Itoa(reloads)+"\n"), 0o600)
			fmt.Printf("fakeserver reloaded (%d)\n", reloads)
			continue
		}
		fmt.Println("fakeserver stopping")
		return
	}
}

func serve(l net.Listener, greeting string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if greeting != "" {
			c.Write([]byte(greeting))
		}
		c.Close()
	}
}

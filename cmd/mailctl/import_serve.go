package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/mailctl/mailctl/internal/mailfmt"
	"github.com/mailctl/mailctl/server/daemon"
)

// importBatch bounds the messages and bytes sent to the server at once:
// the server answers a batch once each of its messages is durable.
const (
	importBatchMessages = 200
	importBatchBytes    = 16 << 20
)

func runServeImport(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "serve import", "-user ADDR (-config FILE | -socket PATH) < STREAM")
	cfgPath := fs.String("config", "", "server configuration `FILE`; its control socket is used")
	socket := fs.String("socket", "", "control socket `PATH` (instead of -config)")
	user := fs.String("user", "", "the user `ADDR` whose mailboxes get the messages")
	if done, code := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return errorf(e, "serve import: unexpected argument %q", fs.Arg(0))
	}
	if *user == "" {
		return errorf(e, "serve import needs -user ADDR")
	}
	path, err := controlSocket(*socket, *cfgPath)
	if err != nil {
		return errorf(e, "serve import: %v", err)
	}
	enc := json.NewEncoder(e.Stdout)
	n, err := serveImport(ctx, path, *user, e.Stdin, func(a daemon.ImportAck) error { return enc.Encode(a) })
	if err != nil {
		enc.Encode(daemon.ImportAck{Error: err.Error()})
		return errorf(e, "serve import: %v", err)
	}
	enc.Encode(daemon.ImportAck{Done: &n})
	return exitOK
}

// serveImport reads the transfer stream in and sends it to the server in
// batches; ack is called for each message appended. A stream cut short
// loses only its last, incomplete batch (never sent).
func serveImport(ctx context.Context, socket, user string, in io.Reader, ack func(daemon.ImportAck) error) (int, error) {
	r := mailfmt.NewStreamReader(in)
	var buf bytes.Buffer
	sw := mailfmt.NewStreamWriter(&buf)
	total, inBatch := 0, 0
	send := func() error {
		if err := sw.End(); err != nil {
			return err
		}
		err := daemon.Import(ctx, socket, user, bytes.NewReader(buf.Bytes()), func(a daemon.ImportAck) error {
			total++
			return ack(a)
		})
		buf.Reset()
		sw = mailfmt.NewStreamWriter(&buf)
		inBatch = 0
		return err
	}
	for {
		rec, body, err := r.Next()
		if errors.Is(err, io.EOF) {
			if inBatch > 0 || buf.Len() > 0 {
				if err := send(); err != nil {
					return total, err
				}
			}
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("read the stream: %w", err)
		}
		switch rec.Kind {
		case mailfmt.KindMailbox:
			err = sw.Mailbox(rec)
		case mailfmt.KindMessage:
			err = sw.Message(rec, body)
			inBatch++
		}
		if err != nil {
			return total, fmt.Errorf("read the stream: %w", err)
		}
		if err := sw.Flush(); err != nil {
			return total, err
		}
		if inBatch >= importBatchMessages || buf.Len() >= importBatchBytes {
			if err := send(); err != nil {
				return total, err
			}
		}
	}
}

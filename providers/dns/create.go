package dns

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mailctl/mailctl/providers/base"
)

// Uncertain reports whether a failed call may nonetheless have been acted
// on by the API: its answer was lost in transport, timed out, or was a
// server error (HTTP 5xx). A create that failed so must be read back
// before it is sent again, or it may be made twice.
func Uncertain(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == 0 || ae.Status >= http.StatusInternalServerError
	}
	return true
}

// CreateAttempts is how many times CreateOnce sends a create whose outcome
// stays unknown.
const CreateAttempts = 3

// CreateOnce sends a request that creates something and is not idempotent
// (a POST of a new record): when its outcome is uncertain (see Uncertain),
// exists reads back whether the thing was created after all, and the
// request is sent again only when it was not. So an answer lost on the way
// back never makes a duplicate record.
func CreateOnce(ctx context.Context, create func(context.Context) error, exists func(context.Context) (bool, error)) error {
	var err error
	for attempt := range CreateAttempts {
		if attempt > 0 {
			t := time.NewTimer(base.Backoff(attempt-1, 250*time.Millisecond, 4*time.Second))
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (interrupted before trying again: %v)", err, ctx.Err())
			case <-t.C:
			}
		}
		err = create(ctx)
		if !Uncertain(err) || ctx.Err() != nil {
			return err
		}
		ok, rerr := exists(ctx)
		if rerr != nil {
			return fmt.Errorf("%w; whether it was made is unknown: reading it back failed: %v", err, rerr)
		}
		if ok {
			return nil
		}
	}
	return err
}

package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"

	"time"

	"go.uber.org/zap"
)

// keyError is the log field of a failed run's error.
const keyError = "error"

// Main runs a server's main: run gets a production logger, and a run that
// fails is logged as "<name> stopped" with its error and exits with
// status 1.
func Main(name string, run func(*zap.Logger) error) {
	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: create logger: %v\n", name, err)
		os.Exit(1)
	}
	if err := run(log); err != nil {
		log.Error(name+" stopped", zap.String(keyError, err.Error()))
		_ = log.Sync()
		os.Exit(1)
	}
	_ = log.Sync()
}

// Serve serves srv on ln until ctx ends, then shuts it down, letting
// in-flight requests finish for up to grace. It returns nil on a clean
// shutdown, and the server's error when it stops serving by itself.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

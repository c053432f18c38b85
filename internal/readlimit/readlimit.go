package readlimit

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge is returned by File when the file holds more than the limit.
var ErrTooLarge = errors.New("file too large")

// File reads the whole file at path, or fails with ErrTooLarge as soon as
// it holds more than max bytes: at most max+1 bytes are ever read, even
// from a device or a pipe that never ends.
func File(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", path, ErrTooLarge, max)
	}
	return data, nil
}

// Prefix reads at most max bytes from the start of the file at path: for
// files whose head is all that is needed (a /proc entry of another
// process, whose command line or environment can be megabytes).
func Prefix(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// Package servetest runs `auditlog serve` for the module's tests: start
// it on a folder, read its ready line, stop (SIGTERM), kill (SIGKILL) or
// restart it.
//
// The binary is $AUDITLOG_BIN (test.sh builds it and sets it), or
// target/debug/auditlog at the repository root. When neither exists the
// served tests are skipped with a message, so `go test` alone still runs
// the rest; test.sh (and so CI) always has it.
package servetest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// Server is one `auditlog serve` process.
type Server struct {
	Dir    string
	Socket string
	bin    string
	cmd    *exec.Cmd
	done   chan error
}

// Binary is the path of the auditlog binary, or "" when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("AUDITLOG_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("AUDITLOG_BIN=%s: %v", bin, err)
		}
		return bin
	}
	_, here, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(here), "../../../../target/debug/auditlog")
	if _, err := os.Stat(bin); err != nil {
		return ""
	}
	return bin
}

// Start runs `auditlog --dir DIR serve --no-http --no-search` and waits
// until it accepts connections; the test kills it at the end.
func Start(t testing.TB, dir string) *Server {
	t.Helper()
	bin := Binary(t)
	if bin == "" {
		t.Skip("no auditlog binary: run bindings/go/test.sh, or set AUDITLOG_BIN")
	}
	s := &Server{Dir: dir, bin: bin}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

func (s *Server) start() error {
	cmd := exec.Command(s.bin, "--dir", s.Dir, "serve", "--no-http", "--no-search")
	cmd.Stderr = nil
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("auditlog serve on %s did not start: %w", s.Dir, err)
	}
	var ready struct {
		Socket string `json:"socket"`
	}
	if err := json.Unmarshal(line, &ready); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("ready line %q: %w", line, err)
	}
	s.Socket = ready.Socket
	s.cmd = cmd
	s.done = make(chan error, 1)
	go func() { s.done <- cmd.Wait() }()
	return nil
}

func (s *Server) signal(sig syscall.Signal) error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(sig)
	var err error
	select {
	case err = <-s.done:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		err = <-s.done
	}
	s.cmd = nil
	return err
}

// Stop sends SIGTERM and waits for the server to drain and exit; its
// exit error (nil for status 0).
func (s *Server) Stop() error { return s.signal(syscall.SIGTERM) }

// Kill sends SIGKILL: the server stops at once (nothing acknowledged is
// lost; the socket file stays behind, as after a crash).
func (s *Server) Kill() { _ = s.signal(syscall.SIGKILL) }

// Restart starts a new server on the same folder and socket.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.cmd != nil {
		t.Fatal("restart of a running server")
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

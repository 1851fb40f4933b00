// An independent check of auditlog's proofs with Go's transparency-log
// packages, which this project did not write: golang.org/x/mod/sumdb/note
// opens the signed checkpoints, golang.org/x/mod/sumdb/tlog checks the
// inclusion (CheckRecord) and consistency (CheckTree) proofs. Every proof
// that run.sh made must pass; every tampered copy (event, proof hash,
// checkpoint, key) must be refused by Go and by `auditlog check-proof`.
//
// run.sh makes the log and the proofs, then runs `go test` with
// PROOFS_DIR (the proof files, the key pair, a replay of the log) and
// AUDITLOG_BIN (the binary whose check-proof is run on the same files).
package proofs

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusionProof struct {
	Format     string   `json:"format"`
	Version    int      `json:"version"`
	LSN        int64    `json:"lsn"`
	LeafIndex  int64    `json:"leaf_index"`
	TreeSize   int64    `json:"tree_size"`
	Record     string   `json:"record"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
}

type consistencyProof struct {
	Format        string   `json:"format"`
	Version       int      `json:"version"`
	OldSize       int64    `json:"old_size"`
	NewSize       int64    `json:"new_size"`
	Proof         []string `json:"proof"`
	OldCheckpoint string   `json:"old_checkpoint"`
	NewCheckpoint string   `json:"new_checkpoint"`
}

// checkpoint is the body of a C2SP tlog-checkpoint.
type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

func dir(t *testing.T) string {
	d := os.Getenv("PROOFS_DIR")
	if d == "" {
		t.Skip("PROOFS_DIR is not set: run tests/proofs-go/run.sh")
	}
	return d
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func verifier(t *testing.T) note.Verifier {
	t.Helper()
	vkey := strings.TrimSpace(string(readFile(t, filepath.Join(dir(t), "key.pub"))))
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("Go does not accept the public key %q: %v", vkey, err)
	}
	return v
}

// openCheckpoint checks the note's signature with Go's note package and
// parses the checkpoint text (origin, size, base64 root, extensions).
func openCheckpoint(msg string, v note.Verifier) (checkpoint, error) {
	n, err := note.Open([]byte(msg), note.VerifierList(v))
	if err != nil {
		return checkpoint{}, err
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return checkpoint{}, fmt.Errorf("checkpoint has %d lines", len(lines))
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return checkpoint{}, err
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return checkpoint{}, err
	}
	if lines[0] != v.Name() {
		return checkpoint{}, fmt.Errorf("origin %q is not the key name %q", lines[0], v.Name())
	}
	return checkpoint{origin: lines[0], size: size, root: root}, nil
}

func hashes(list []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		h, err := tlog.ParseHash(s)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// checkInclusion is the whole check an auditor makes with Go's packages.
func checkInclusion(p inclusionProof, v note.Verifier) error {
	c, err := openCheckpoint(p.Checkpoint, v)
	if err != nil {
		return err
	}
	if c.size != p.TreeSize {
		return fmt.Errorf("checkpoint size %d, proof size %d", c.size, p.TreeSize)
	}
	record, err := base64.StdEncoding.DecodeString(p.Record)
	if err != nil {
		return err
	}
	path, err := hashes(p.Proof)
	if err != nil {
		return err
	}
	return tlog.CheckRecord(path, c.size, c.root, p.LeafIndex, tlog.RecordHash(record))
}

func checkConsistency(p consistencyProof, v note.Verifier) error {
	old, err := openCheckpoint(p.OldCheckpoint, v)
	if err != nil {
		return err
	}
	cur, err := openCheckpoint(p.NewCheckpoint, v)
	if err != nil {
		return err
	}
	if old.size != p.OldSize || cur.size != p.NewSize {
		return fmt.Errorf("checkpoint sizes %d/%d, proof sizes %d/%d", old.size, cur.size, p.OldSize, p.NewSize)
	}
	path, err := hashes(p.Proof)
	if err != nil {
		return err
	}
	if old.size == cur.size {
		if len(path) != 0 || old.root != cur.root {
			return fmt.Errorf("equal sizes need an empty proof and equal roots")
		}
		return nil
	}
	return tlog.CheckTree(path, cur.size, cur.root, old.size, old.root)
}

// auditlogAccepts runs `auditlog check-proof` on a proof value.
func auditlogAccepts(t *testing.T, proof any, key string) bool {
	t.Helper()
	bin := os.Getenv("AUDITLOG_BIN")
	if bin == "" {
		t.Fatal("AUDITLOG_BIN is not set")
	}
	b, err := json.MarshalIndent(proof, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "proof.json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check-proof", f, "--key", key)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err == nil {
		return true
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return false
	}
	t.Fatalf("auditlog check-proof failed to run: %v\n%s", err, out.String())
	return false
}

func proofFiles(t *testing.T, prefix string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir(t), prefix+"*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no %s proofs in %s", prefix, dir(t))
	}
	return files
}

func flip(s string, at int) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return s + "A"
	}
	b[at%len(b)] ^= 0x01
	return base64.StdEncoding.EncodeToString(b)
}

// otherKey is a key pair Go makes with the same name: its verifier must
// not accept the log's checkpoints.
func otherKey(t *testing.T, name string) (note.Verifier, string) {
	t.Helper()
	_, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "other.pub")
	if err := os.WriteFile(f, []byte(vkey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return v, f
}

func TestInclusionProofsPassGoAndTamperingFailsBoth(t *testing.T) {
	v := verifier(t)
	key := filepath.Join(dir(t), "key.pub")
	wrongV, wrongKey := otherKey(t, v.Name())
	for _, f := range proofFiles(t, "inclusion-") {
		var p inclusionProof
		if err := json.Unmarshal(readFile(t, f), &p); err != nil {
			t.Fatal(err)
		}
		if err := checkInclusion(p, v); err != nil {
			t.Fatalf("%s: Go's tlog refuses a proof auditlog made: %v", f, err)
		}
		if !auditlogAccepts(t, p, key) {
			t.Fatalf("%s: auditlog check-proof refuses its own proof", f)
		}
		tampered := map[string]inclusionProof{}
		e := p
		e.Record = flip(p.Record, len(p.Record)/2)
		tampered["event"] = e
		if len(p.Proof) > 0 {
			q := p
			q.Proof = append([]string(nil), p.Proof...)
			q.Proof[len(q.Proof)/2] = flip(q.Proof[len(q.Proof)/2], 3)
			tampered["proof hash"] = q
			short := p
			short.Proof = p.Proof[:len(p.Proof)-1]
			tampered["proof cut short"] = short
		}
		idx := p
		idx.LeafIndex = (p.LeafIndex + 1) % p.TreeSize
		if idx.LeafIndex != p.LeafIndex {
			tampered["leaf index"] = idx
		}
		c := p
		c.Checkpoint = strings.Replace(p.Checkpoint, "\n"+strconv.FormatInt(p.TreeSize, 10)+"\n", "\n"+strconv.FormatInt(p.TreeSize+1, 10)+"\n", 1)
		c.TreeSize = p.TreeSize + 1
		tampered["checkpoint size"] = c
		r := p
		lines := strings.SplitN(p.Checkpoint, "\n", 4)
		lines[2] = flip(lines[2], 0)
		r.Checkpoint = strings.Join(lines, "\n")
		tampered["checkpoint root"] = r
		for what, bad := range tampered {
			if err := checkInclusion(bad, v); err == nil {
				t.Errorf("%s: Go accepts a tampered %s", f, what)
			}
			if auditlogAccepts(t, bad, key) {
				t.Errorf("%s: auditlog check-proof accepts a tampered %s", f, what)
			}
		}
		// The right proof under another key (same name) fails both.
		if err := checkInclusion(p, wrongV); err == nil {
			t.Errorf("%s: Go accepts the checkpoint under another key", f)
		}
		if auditlogAccepts(t, p, wrongKey) {
			t.Errorf("%s: auditlog accepts the checkpoint under another key", f)
		}
	}
}

func TestConsistencyProofsPassGoAndTamperingFailsBoth(t *testing.T) {
	v := verifier(t)
	key := filepath.Join(dir(t), "key.pub")
	checked := 0
	for _, f := range proofFiles(t, "consistency-") {
		var p consistencyProof
		if err := json.Unmarshal(readFile(t, f), &p); err != nil {
			t.Fatal(err)
		}
		if err := checkConsistency(p, v); err != nil {
			t.Fatalf("%s: Go's tlog refuses a proof auditlog made: %v", f, err)
		}
		if !auditlogAccepts(t, p, key) {
			t.Fatalf("%s: auditlog check-proof refuses its own proof", f)
		}
		if len(p.Proof) == 0 {
			continue
		}
		checked++
		q := p
		q.Proof = append([]string(nil), p.Proof...)
		q.Proof[0] = flip(q.Proof[0], 5)
		o := p
		lines := strings.SplitN(p.OldCheckpoint, "\n", 4)
		lines[2] = flip(lines[2], 9)
		o.OldCheckpoint = strings.Join(lines, "\n")
		for what, bad := range map[string]consistencyProof{"proof hash": q, "old checkpoint": o} {
			if err := checkConsistency(bad, v); err == nil {
				t.Errorf("%s: Go accepts a tampered %s", f, what)
			}
			if auditlogAccepts(t, bad, key) {
				t.Errorf("%s: auditlog accepts a tampered %s", f, what)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no consistency proof with hashes was checked")
	}
}

// The private key auditlog wrote is a Go note signer key: Go signs the
// same checkpoint text to the same bytes (Ed25519 is deterministic).
func TestSignaturesAreByteForByteGos(t *testing.T) {
	skey := strings.TrimSpace(string(readFile(t, filepath.Join(dir(t), "key"))))
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatalf("Go does not accept the private key: %v", err)
	}
	var p inclusionProof
	if err := json.Unmarshal(readFile(t, proofFiles(t, "inclusion-")[0]), &p); err != nil {
		t.Fatal(err)
	}
	text := p.Checkpoint[:strings.LastIndex(p.Checkpoint, "\n\n")+1]
	signed, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if string(signed) != p.Checkpoint {
		t.Fatalf("Go signs\n%q\nauditlog stored\n%q", signed, p.Checkpoint)
	}
}

// The retention record's note is a signed checkpoint too (of the tree
// before the first kept event, with an extension line), and the newest
// checkpoint extends it.
func TestRetentionNoteIsASignedCheckpoint(t *testing.T) {
	v := verifier(t)
	var found bool
	for _, line := range strings.Split(string(readFile(t, filepath.Join(dir(t), "replay.jsonl"))), "\n") {
		if !strings.Contains(line, `"record":"retention"`) {
			continue
		}
		var ev struct {
			TreeSize int64  `json:"tree_size"`
			TreeNote string `json:"tree_note"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		n, err := note.Open([]byte(ev.TreeNote), note.VerifierList(v))
		if err != nil {
			t.Fatalf("Go refuses the retention note: %v", err)
		}
		if !strings.Contains(n.Text, "\nauditlog-retention ") {
			t.Fatalf("no retention extension line in %q", n.Text)
		}
		c, err := openCheckpoint(ev.TreeNote, v)
		if err != nil || c.size != ev.TreeSize {
			t.Fatalf("retention note: %v (size %d, record %d)", err, c.size, ev.TreeSize)
		}
		found = true
	}
	if !found {
		t.Fatal("the replay holds no retention record")
	}
}

// The C2SP tlog-tiles folders `auditlog tiles` wrote, read by Go's
// golang.org/x/mod/sumdb/tlog tile code (TileHashReader over a TileReader
// that reads the files): the checkpoint opens with sumdb/note, the tree
// hash and every leaf's inclusion proof come out of the tiles and check
// against the signed root, the entry bundles hash to the level-0 tiles,
// and a tampered tile or checkpoint is refused.
//
// run.sh writes PROOFS_DIR/tiles (before the retentions, then again after
// each: the reruns keep the tiles over the dropped leaves), and
// PROOFS_DIR/tiles-fresh and tiles-fresh2 (first written after the first
// and the second retention: the tiles wholly over the dropped leaves are
// missing, the rest, the tiles spanning the cut included, serves every
// kept leaf).
package proofs

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// fileTiles is a tlog.TileReader over a tlog-tiles folder. Go's own tile
// paths are tile/H/L/N (sumdb's layout); C2SP's drop the fixed H = 8.
type fileTiles struct{ root string }

func (f fileTiles) Height() int { return 8 }

func c2spPath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
}

func (f fileTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := os.ReadFile(filepath.Join(f.root, c2spPath(t)))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (f fileTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// bundle reads the entries of level-0 tile t from its entry bundle.
func bundle(root string, t tlog.Tile) ([][]byte, error) {
	b, err := os.ReadFile(filepath.Join(root, "tile/entries", strings.TrimPrefix(c2spPath(t), "tile/0/")))
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("bundle ends inside a length")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, fmt.Errorf("bundle ends inside an entry")
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out, nil
}

// leafTile is the level-0 tile holding leaf i in a tree of size leaves.
func leafTile(i, size int64) tlog.Tile {
	t := tlog.Tile{H: 8, L: 0, N: i / 256, W: 256}
	if i/256 == size/256 {
		t.W = int(size % 256)
	}
	return t
}

func tilesDir(t *testing.T, name string) string {
	d := filepath.Join(dir(t), name)
	if _, err := os.Stat(d); err != nil {
		t.Skipf("%s: %v (run tests/proofs-go/run.sh)", d, err)
	}
	return d
}

// servedTree opens a tiles folder's checkpoint with the log's key.
func servedTree(t *testing.T, root string) (checkpoint, tlog.HashReader) {
	t.Helper()
	c, err := openCheckpoint(string(readFile(t, filepath.Join(root, "checkpoint"))), verifier(t))
	if err != nil {
		t.Fatalf("%s/checkpoint does not open with the key: %v", root, err)
	}
	return c, tlog.TileHashReader(tlog.Tree{N: c.size, Hash: c.root}, fileTiles{root})
}

// proveLeaf proves leaf i from the tiles alone and checks it as an
// auditor would, with the leaf's entry from its bundle.
func proveLeaf(c checkpoint, hr tlog.HashReader, root string, i int64) error {
	p, err := tlog.ProveRecord(c.size, i, hr)
	if err != nil {
		return fmt.Errorf("ProveRecord(%d): %w", i, err)
	}
	entries, err := bundle(root, leafTile(i, c.size))
	if err != nil {
		return err
	}
	entry := entries[i%256]
	return tlog.CheckRecord(p, c.size, c.root, i, tlog.RecordHash(entry))
}

func TestTilesServeEveryLeafToGosTileReader(t *testing.T) {
	root := tilesDir(t, "tiles")
	c, hr := servedTree(t, root)
	h, err := tlog.TreeHash(c.size, hr)
	if err != nil || h != c.root {
		t.Fatalf("TreeHash from the tiles: %v, %v; the checkpoint signs %v", h, err, c.root)
	}
	// Every leaf, dropped ones included: the tiles written before the
	// retention are still there.
	for i := int64(0); i < c.size; i++ {
		if err := proveLeaf(c, hr, root, i); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
	}
	// The bundles hold exactly the records auditlog's own proofs carry.
	for _, f := range proofFiles(t, "inclusion-") {
		var p inclusionProof
		if err := json.Unmarshal(readFile(t, f), &p); err != nil {
			t.Fatal(err)
		}
		entries, err := bundle(root, leafTile(p.LeafIndex, c.size))
		if err != nil {
			t.Fatal(err)
		}
		if got := base64.StdEncoding.EncodeToString(entries[p.LeafIndex%256]); got != p.Record {
			t.Fatalf("%s: leaf %d's bundle entry is not the proof's record", f, p.LeafIndex)
		}
		if p.TreeSize == c.size {
			want, err := hashes(p.Proof)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tlog.ProveRecord(c.size, p.LeafIndex, hr)
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tlog.RecordProof(want)) {
				t.Fatalf("%s: the tiles' proof differs from `auditlog prove`'s (%v)", f, err)
			}
		}
	}
	t.Logf("%d leaves proved from the tiles of %s", c.size, root)
}

func TestTilesProveConsistencyWithTheFirstServedCheckpoint(t *testing.T) {
	root := tilesDir(t, "tiles")
	c, hr := servedTree(t, root)
	old, err := openCheckpoint(string(readFile(t, filepath.Join(dir(t), "tiles-first.checkpoint"))), verifier(t))
	if err != nil {
		t.Fatal(err)
	}
	if old.size >= c.size {
		t.Fatalf("the first served checkpoint (%d) is not older than the newest (%d)", old.size, c.size)
	}
	p, err := tlog.ProveTree(c.size, old.size, hr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(p, c.size, c.root, old.size, old.root); err != nil {
		t.Fatalf("the tiles do not prove %d -> %d consistent: %v", old.size, c.size, err)
	}
}

func TestEntryBundlesHashToTheLevel0Tiles(t *testing.T) {
	root := tilesDir(t, "tiles")
	c, _ := servedTree(t, root)
	for n := int64(0); n*256 < c.size; n++ {
		tile := leafTile(n*256, c.size)
		data := readFile(t, filepath.Join(root, c2spPath(tile)))
		entries, err := bundle(root, tile)
		if err != nil || len(entries) != tile.W {
			t.Fatalf("bundle %d: %d entries, %v", n, len(entries), err)
		}
		for k, e := range entries {
			i := n*256 + int64(k)
			h, err := tlog.HashFromTile(tile, data, tlog.StoredHashIndex(0, i))
			if err != nil || h != tlog.RecordHash(e) {
				t.Fatalf("leaf %d: the bundle entry does not hash to the tile's (%v)", i, err)
			}
		}
	}
}

// copyTiles copies a tiles folder so that a test can damage it.
func copyTiles(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

func TestATamperedTileOrCheckpointIsRefused(t *testing.T) {
	src := tilesDir(t, "tiles")
	c, _ := servedTree(t, src)
	if c.size <= 512 {
		t.Fatalf("the log is too small (%d leaves) for this test", c.size)
	}
	// A full level-0 tile: leaf 300's proof reads it and checks it against
	// the level-1 tile above it.
	root := copyTiles(t, src)
	full := filepath.Join(root, "tile/0/001")
	b := readFile(t, full)
	b[40] ^= 1
	if err := os.WriteFile(full, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, hr := servedTree(t, root)
	if _, err := tlog.ProveRecord(c.size, 300, hr); err == nil {
		t.Fatal("Go's TileHashReader accepted a changed full tile")
	}
	if err := proveLeaf(c, hr, root, 5); err != nil {
		t.Fatalf("an untouched tile's leaf: %v", err)
	}
	// The newest partial tiles give the root: changing one changes it.
	root = copyTiles(t, src)
	parts, _ := filepath.Glob(filepath.Join(root, "tile/1/*.p/*"))
	if len(parts) == 0 {
		t.Fatal("no partial level-1 tile")
	}
	for _, p := range parts {
		b := readFile(t, p)
		b[0] ^= 1
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, hr = servedTree(t, root)
	if _, err := tlog.TreeHash(c.size, hr); err == nil {
		t.Fatal("Go's TileHashReader accepted a changed partial tile")
	}
	// A checkpoint with another size does not open with the key.
	cp := string(readFile(t, filepath.Join(src, "checkpoint")))
	forged := strings.Replace(cp, fmt.Sprintf("\n%d\n", c.size), fmt.Sprintf("\n%d\n", c.size+1), 1)
	if _, err := openCheckpoint(forged, verifier(t)); err == nil {
		t.Fatal("a checkpoint with a changed size opened")
	}
}

// A folder first written after a retention lacks only the tiles wholly
// over the dropped leaves and the bundles of dropped events (the report
// names exactly those); the tiles spanning the cut are there (format 5:
// the retention record kept their hashes), so Go's TileHashReader proves
// every kept leaf, and consistency from every kept checkpoint.
func TestTilesWrittenAfterRetentionServeEveryKeptLeaf(t *testing.T) {
	for _, name := range []string{"tiles-fresh", "tiles-fresh2"} {
		t.Run(name, func(t *testing.T) { checkFresh(t, name) })
	}
}

func checkFresh(t *testing.T, name string) {
	root := tilesDir(t, name)
	var report struct {
		TreeSize          int64    `json:"tree_size"`
		Unavailable       []string `json:"unavailable"`
		CheckpointWritten bool     `json:"checkpoint_written"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(dir(t), name+".json")), &report); err != nil {
		t.Fatal(err)
	}
	var cut int64
	if _, err := fmt.Sscan(string(readFile(t, filepath.Join(dir(t), name+".cut"))), &cut); err != nil || cut == 0 {
		t.Fatalf("%s.cut: %v", name, err)
	}
	if !report.CheckpointWritten || len(report.Unavailable) == 0 {
		t.Fatalf("report: %+v (retention dropped %d leaves)", report, cut)
	}
	c, hr := servedTree(t, root)
	if h, err := tlog.TreeHash(c.size, hr); err != nil || h != c.root {
		t.Fatalf("TreeHash: %v", err)
	}
	// Unavailable: level-0 tiles wholly before the cut, bundles of tiles
	// starting before it; nothing at a higher level.
	for _, p := range report.Unavailable {
		var n int64
		switch {
		case strings.HasPrefix(p, "tile/0/"):
			if _, err := fmt.Sscanf(p, "tile/0/%d", &n); err != nil || (n+1)*256 > cut {
				t.Fatalf("%s is unavailable, yet it holds kept leaves (cut %d)", p, cut)
			}
		case strings.HasPrefix(p, "tile/entries/"):
			if _, err := fmt.Sscanf(p, "tile/entries/%d", &n); err != nil || n*256 >= cut {
				t.Fatalf("%s is unavailable, yet its events are kept (cut %d)", p, cut)
			}
		default:
			t.Fatalf("%s is unavailable (cut %d)", p, cut)
		}
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Fatalf("%s is reported unavailable but is there", p)
		}
	}
	if cut%256 != 0 {
		if _, err := os.Stat(filepath.Join(root, c2spPath(leafTile(cut, c.size)))); err != nil {
			t.Fatalf("the tile spanning the cut is missing: %v", err)
		}
	}
	// Every kept leaf: its hash from the tiles (checked by the reader
	// against the signed root), its proof from the tiles, and, where the
	// bundle is there, its entry hashing to it.
	for i := cut; i < c.size; i++ {
		hs, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
		if err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		p, err := tlog.ProveRecord(c.size, i, hr)
		if err != nil {
			t.Fatalf("ProveRecord(%d): %v", i, err)
		}
		if err := tlog.CheckRecord(p, c.size, c.root, i, hs[0]); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		if i/256 > cut/256 || cut%256 == 0 {
			entries, err := bundle(root, leafTile(i, c.size))
			if err != nil || tlog.RecordHash(entries[i%256]) != hs[0] {
				t.Fatalf("leaf %d: the bundle entry does not hash to the tile's (%v)", i, err)
			}
		}
	}
	// The kept leaves in the tile spanning the cut (no bundle): the
	// records `auditlog prove` hands out hash to the tiles' leaves.
	for _, f := range proofFiles(t, "inclusion-") {
		var p inclusionProof
		if err := json.Unmarshal(readFile(t, f), &p); err != nil {
			t.Fatal(err)
		}
		if p.LeafIndex < cut || p.LeafIndex >= c.size {
			continue
		}
		rec, err := base64.StdEncoding.DecodeString(p.Record)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, p.LeafIndex)})
		if err != nil || hs[0] != tlog.RecordHash(rec) {
			t.Fatalf("%s: leaf %d's record is not the tiles' (%v)", f, p.LeafIndex, err)
		}
	}
	// Consistency from the cut and from halfway to the served tree.
	for _, old := range []int64{cut, (cut + c.size) / 2} {
		oldRoot, err := tlog.TreeHash(old, hr)
		if err != nil {
			t.Fatalf("TreeHash(%d): %v", old, err)
		}
		p, err := tlog.ProveTree(c.size, old, hr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckTree(p, c.size, c.root, old, oldRoot); err != nil {
			t.Fatalf("%d -> %d: %v", old, c.size, err)
		}
	}
	t.Logf("%s: leaves %d..%d proved from the tiles; unavailable: %v", name, cut, c.size, report.Unavailable)
}

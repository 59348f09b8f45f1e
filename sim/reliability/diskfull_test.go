package reliability

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	_ "github.com/mattn/go-sqlite3" // the agent's store is SQLite

	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/sim"
)

// TestDiskFull puts the agent stores of some devices (agent.db, the state directory) on a small tmpfs of
// their own, fills it while the terminals keep changing, and frees it again. While the disk is full the
// agents must go on enforcing (raw captures that reach their limit are deleted) and must never leave a
// person without a way through; their audit chains must still verify; and once space returns, everything
// they recorded must reach the controller, once.
//
// Where mounting a tmpfs is not permitted (EPERM: not root, no CAP_SYS_ADMIN), the test caps each store
// with SQLite's max_page_count instead, which SQLite reports exactly as a full disk, and says so in the
// log. FACEGUARD_DISKFULL=pagecount forces that way.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	s := scaleOf(t)
	r := newRig(t)
	const n, full = 6, 4 // the first four on the small disk, two beside them on the usual one
	disk := newSmallDisk(t, 64<<20)
	var diskFullErrors [full]atomic.Int64
	opts := r.fleetOptions(mixedProfiles("full", n))
	// The agents look again every two seconds, so they record what the full disk kept from them soon
	// after space returns without the test poking them (a real agent looks every minute).
	opts.EvaluateEvery = 2 * time.Second
	opts.Customize = func(i int, o *sim.DeviceOptions) {
		if i < full {
			o.StateDir = filepath.Join(disk.dir, o.Profile.ID)
			o.Logger = slog.New(&errorCounter{match: store.ErrDiskFull.Error(), n: &diskFullErrors[i]})
		}
	}
	f := r.startFleet(opts)
	devs := f.Devices()
	way := watchWayThrough(devs)
	// Prompts only: the raw captures are the test's own, to see them deleted while the disk is full.
	tr := startTrafficWith(devs, 50*time.Millisecond, false)
	s.cycles(t, func(int) {
		time.Sleep(time.Second)
		before := make([]int64, full)
		for i := range full {
			before[i] = diskFullErrors[i].Load()
		}
		start := time.Now()
		disk.fill(t, devs[:full])
		// Enforcement goes on: a capture on each full device is deleted once raw_image_max_s old.
		for _, d := range devs[:full] {
			if err := d.Terminal().Capture(1); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "the captures deleted while the disk is full", func() bool {
			for _, d := range devs[:full] {
				if n, err := d.Terminal().Captures(); err != nil || n > 0 {
					return false
				}
			}
			return true
		})
		time.Sleep(s.outage - time.Since(start))
		for i := range full {
			if diskFullErrors[i].Load() == before[i] {
				t.Errorf("%s never met a full disk: the fault was not made", devs[i].ID())
			}
		}
		disk.free(t)
	})
	tr.Stop(t)
	var met int64
	for i := range full {
		met += diskFullErrors[i].Load()
	}
	t.Logf("the agents logged %d writes refused for a full disk (%s)", met, disk.how)
	r.checkDelivered(t, devs)
	checkOrdersSettled(t, devs)
	way.Check(t)
}

// smallDisk is a file system too small for what is written to it: a tmpfs of its own, or, where
// mounting is not permitted, each store capped at its size (max_page_count).
type smallDisk struct {
	dir     string
	how     string
	mounted bool
	filler  string
	capped  []*sql.DB
}

func newSmallDisk(t *testing.T, size int) *smallDisk {
	t.Helper()
	d := &smallDisk{dir: t.TempDir()}
	if os.Getenv("FACEGUARD_DISKFULL") == "pagecount" {
		d.how = "each store capped with max_page_count (FACEGUARD_DISKFULL=pagecount)"
		t.Log("disk full: " + d.how)
		return d
	}
	err := syscall.Mount("tmpfs", d.dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size))
	switch {
	case errors.Is(err, syscall.EPERM):
		d.how = fmt.Sprintf("mount tmpfs: %v; each store capped with max_page_count instead", err)
		t.Log("disk full: " + d.how)
		return d
	case err != nil:
		t.Fatalf("mount a tmpfs on %s: %v", d.dir, err)
	}
	d.mounted = true
	d.how = fmt.Sprintf("a tmpfs of %d MiB, filled", size>>20)
	// Runs after the fleet's cleanup (registered later), before the directory's removal.
	t.Cleanup(func() {
		if err := syscall.Unmount(d.dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", d.dir, err)
		}
	})
	return d
}

// fill leaves no room for the devices' stores.
func (d *smallDisk) fill(t *testing.T, devs []*sim.Device) {
	t.Helper()
	if !d.mounted {
		for _, dev := range devs {
			db, err := storeDB(dev.Store())
			if err != nil {
				t.Fatal(err)
			}
			var pages int
			if err := db.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRow(fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)).Scan(&pages); err != nil {
				t.Fatal(err)
			}
			d.capped = append(d.capped, db)
		}
		return
	}
	// An empty write-ahead log first: SQLite reuses the space of one it has checkpointed, so a store
	// whose log already grew could go on committing into it for a while on a full disk.
	for _, dev := range devs {
		truncateWAL(t, dev.StorePath())
	}
	d.filler = filepath.Join(d.dir, "filler")
	f, err := os.Create(d.filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4 << 10, 512} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.dir, &st); err == nil {
		t.Logf("disk full: %d bytes free on the tmpfs", st.Bavail*uint64(st.Bsize))
	}
}

// free gives the space back.
func (d *smallDisk) free(t *testing.T) {
	t.Helper()
	for _, db := range d.capped {
		var pages int
		if err := db.QueryRow(`PRAGMA max_page_count = 1073741823`).Scan(&pages); err != nil {
			t.Fatal(err)
		}
	}
	d.capped = nil
	if d.filler != "" {
		if err := os.Remove(d.filler); err != nil {
			t.Fatal(err)
		}
		d.filler = ""
	}
}

// truncateWAL checkpoints a store's write-ahead log and truncates it to nothing, through a connection
// of its own (the agent's goes on; WAL lets both in).
func truncateWAL(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for try := 0; ; try++ {
		var busy, logFrames, checkpointed int
		if err := db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &checkpointed); err != nil {
			t.Fatal(err)
		}
		if busy == 0 || try == 50 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storeDB reaches the agent store's one SQLite connection pool, to cap it with max_page_count (a
// per-connection setting) when no small file system can be mounted. agent/store offers no such knob,
// and this fault needs one: the test reaches in rather than the product growing a test-only option. A
// store whose fields changed fails the test here, loudly.
func storeDB(st *store.Store) (*sql.DB, error) {
	v := reflect.ValueOf(st).Elem().FieldByName("db")
	if !v.IsValid() || v.Type() != reflect.TypeFor[*sql.DB]() {
		return nil, errors.New("agent/store.Store has no db *sql.DB field any more: update storeDB")
	}
	return *(**sql.DB)(unsafe.Pointer(v.UnsafeAddr())), nil
}

// errorCounter is a log handler that counts the records with an attribute mentioning match.
type errorCounter struct {
	match string
	n     *atomic.Int64
}

func (h *errorCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h *errorCounter) Handle(_ context.Context, r slog.Record) error {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if strings.Contains(a.Value.String(), h.match) {
			found = true
			return false
		}
		return true
	})
	if found {
		h.n.Add(1)
	}
	return nil
}

func (h *errorCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *errorCounter) WithGroup(string) slog.Handler      { return h }

// Package fsterm is the reference terminal adapter: it implements device.Terminal over the file layout
// of docs/terminal.md under a root directory, the way node_exporter reads /proc under --path.procfs, so
// that tests and vendors can point it at a tree of plain files.
//
// Facts: each group comes from a small collector. A collector that cannot read or understand its file
// marks its groups unknown, names the file and the problem, and leaves placeholders that the policy never
// reads; the other collectors still run. Nothing missing is ever turned into a compliant value.
//
// Actions: ApplyControl writes run/faceguard/control.json atomically; DeleteRawImages deletes raw
// captures without a consent sidecar; the purges, quarantines and ForgetSubject change the gallery, each
// in one transaction. The rules that say which subject is withdrawn, without consent, a minor without
// guardian consent or expired are defined once (rules.go) and used both to count and to act, so the agent
// only ever acts on what the facts counted.
//
// fsterm must never copy subject references, templates or images anywhere but the terminal's own files
// (control.json, which lists quarantined references for the terminal software, is one of them), never put
// them in facts, receipts or error messages, and never send anything over the network: what it returns
// is counts, flags, flows, keyed subject hashes and receipts, and those leave the device only through the
// agent. It never creates a gallery, changes no gallery schema beyond adding faceguard_quarantine, and
// deletes nothing but unconsented raw captures and the subjects an action or a forget command selects.
package fsterm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/internal/clock"
)

// Paths of the files fsterm reads, relative to the root. They are also the Source of every Unknown entry,
// so a report tells the installer which file to fix without revealing where the root is mounted.
const (
	SitePath     = "etc/faceguard/site.yaml"
	StatusPath   = "var/lib/terminal/status.json"
	GalleryPath  = "var/lib/terminal/gallery.db"
	SpoolPath    = "var/spool/terminal/raw"
	ProcTCPPath  = "proc/net/tcp"
	ProcTCP6Path = "proc/net/tcp6"
)

// Sources of Unknown entries that are not files: the agent's own configuration.
const (
	sourceDeviceIDOption      = "options.device_id"
	sourceAllowedRemoteOption = "options.allowed_remotes"
)

// Limits the facts schema sets, checked here so that whatever a terminal writes, the document fsterm
// produces still validates.
const (
	maxCount        = 1_000_000_000
	maxReasonLen    = 1024
	maxObservedFlow = 64
	// maxDeclaredFlow leaves room for maxObservedFlow observed flows within the schema's 1024.
	maxDeclaredFlow = 1024 - maxObservedFlow
)

// idPattern is the syntax of site and device ids in site.yaml and of device.id in facts.
var idPattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Options configure a Terminal.
type Options struct {
	// Root is the directory the layout of docs/terminal.md sits under ("/" on a device).
	Root string
	// Clock tells the time for every age; nil means the system clock.
	Clock clock.Clock
	// DeviceID, when set, is the device id the agent was configured with; it wins over site.yaml.
	DeviceID string
	// StatusMaxAge makes status.json unknown when its updated_at is older than this, because terminal
	// software that stopped writing it may have stopped working. 0 turns the check off.
	StatusMaxAge time.Duration
	// AllowedRemotes are extra remotes the egress probe does not report, in the syntax of site.yaml
	// network.allowed_remotes: the agent's own broker, for instance.
	AllowedRemotes []string
	// SubjectKey is the fleet's subject key: subjects leave the device only as wire.SubjectHash under
	// it. Purges (their receipts), ForgetSubject and SubjectHashes fail with ErrNoSubjectKey without it.
	SubjectKey []byte
	// GalleryIdleTimeout closes the read-write gallery connection after it has been unused this long;
	// 0 keeps it open, warm for the next match or action (the agent on a terminal). A process that hosts
	// thousands of simulated terminals sets it to stay within its open files (each connection holds the
	// database and its write-ahead log).
	GalleryIdleTimeout time.Duration
	// CountOnFreshConnection opens the gallery for each count of the facts and closes it after, instead
	// of keeping the read connection (and its last count) for the next: two files fewer a terminal, for
	// a process that hosts thousands of simulated ones, at the price of reading the whole gallery at
	// every evaluation.
	CountOnFreshConnection bool
	// ReleaseMemoryAfterCount returns the memory a count of the gallery used to the operating system as
	// soon as the count is done (a forced collection: within the noise of the count's own 20 ms at 10,000
	// subjects, measured 2026-11-24). A count
	// makes about 400 bytes of garbage a subject, which would otherwise stay resident until the runtime
	// gives it back on its own: the agent on a terminal, whose resident memory is budgeted (DESIGN §11),
	// sets it; a process of thousands of simulated terminals, sharing one heap, must not.
	ReleaseMemoryAfterCount bool
}

// SiteInfo is what the agent shows and reports besides the facts. Each field is empty (nil) when the
// file it comes from could not be read at the last Facts call.
type SiteInfo struct {
	SiteID   string // site.yaml site.id: groups terminals on the dashboard
	SiteName string // site.yaml site.name, free text
	Model    string // status.json model
	Firmware string // status.json firmware
	// ControlGeneration is the generation of the last control.json the terminal says it applied, so the
	// agent can tell whether its latest order has taken effect.
	ControlGeneration *int64
}

// Terminal gathers the facts of the terminal under one root and carries out the agent's actions on it.
// Its methods may be called concurrently; Close releases the gallery connections the actions opened.
type Terminal struct {
	opts  Options
	clock clock.Clock

	mu   sync.Mutex
	site SiteInfo

	// controlMu makes ApplyControl one step: read the current generation, decide, write.
	controlMu      sync.Mutex
	lastGeneration int64 // the generation of the last control.json written

	// galleryMu guards gallery. Users hold it shared for as long as they use the handle; replacing or
	// closing the handle holds it exclusively, so no connection is closed under a running query.
	galleryMu sync.RWMutex
	gallery   *galleryHandle
	// galleryRO is the read-only connection the facts are counted on.
	galleryRO galleryReader
	// The last site.yaml and status.json parsed.
	siteParse   lastParse[*siteDoc]
	statusParse lastParse[*statusDoc]
}

var _ device.Terminal = (*Terminal)(nil)

// New returns a Terminal for the tree under opts.Root. It touches no file until a method is called.
func New(opts Options) *Terminal {
	c := opts.Clock
	if c == nil {
		c = clock.Real{}
	}
	t := &Terminal{opts: opts, clock: c}
	t.galleryRO.release = opts.ReleaseMemoryAfterCount
	return t
}

// Site returns what the last Facts call learnt about the site and the terminal software.
func (t *Terminal) Site() SiteInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.site
}

// Facts gathers the facts document. Groups that cannot be gathered are listed in Facts.Unknown; the only
// error is a cancelled ctx, because a half-gathered document must not be evaluated as if it were whole.
func (t *Terminal) Facts(ctx context.Context) (device.Facts, error) {
	now := t.clock.Now()
	f := placeholderFacts(now)
	if err := ctx.Err(); err != nil {
		return device.Facts{}, fmt.Errorf("collect facts: %w", err)
	}

	site := collectSite(t.path(SitePath), &t.siteParse, &f)
	t.applyDeviceID(&f, site)
	if err := ctx.Err(); err != nil {
		return device.Facts{}, fmt.Errorf("collect facts: %w", err)
	}

	status := collectStatus(t.path(StatusPath), &t.statusParse, now, t.opts.StatusMaxAge, &f)
	if err := ctx.Err(); err != nil {
		return device.Facts{}, fmt.Errorf("collect facts: %w", err)
	}

	var retentionDays *int
	if site.noticeKnown {
		retentionDays = &f.Notice.RetentionDays
	}
	reader := &t.galleryRO
	if t.opts.CountOnFreshConnection {
		reader = nil
	}
	if err := collectGallery(ctx, reader, t.path(GalleryPath), now, retentionDays, &f); err != nil {
		return device.Facts{}, fmt.Errorf("collect facts: %w", err)
	}

	collectSpool(t.path(SpoolPath), now, &f)
	if err := ctx.Err(); err != nil {
		return device.Facts{}, fmt.Errorf("collect facts: %w", err)
	}

	collectEgress(t.opts.Root, probeInput{
		declared:       status.declaredRemotes,
		siteAllowed:    site.allowed,
		siteKnown:      site.known,
		optionsAllowed: t.opts.AllowedRemotes,
	}, &f)
	if err := ctx.Err(); err != nil {
		return device.Facts{}, fmt.Errorf("collect facts: %w", err)
	}

	t.mu.Lock()
	t.site = SiteInfo{
		SiteID:            site.siteID,
		SiteName:          site.siteName,
		Model:             status.model,
		Firmware:          status.firmware,
		ControlGeneration: status.controlGeneration,
	}
	t.mu.Unlock()
	return f, nil
}

// applyDeviceID settles device.id: the configured id wins, then site.yaml, then a placeholder.
func (t *Terminal) applyDeviceID(f *device.Facts, site siteResult) {
	switch {
	case t.opts.DeviceID != "" && idPattern.MatchString(t.opts.DeviceID):
		f.Device.ID = t.opts.DeviceID
	case t.opts.DeviceID != "":
		// The daemon validates its configuration; this only keeps the document valid if it did not.
		f.Device.ID = "unknown"
		if !f.IsUnknown(device.GroupDevice) {
			markUnknown(f, device.GroupDevice, sourceDeviceIDOption, fmt.Errorf("configured device id does not match [a-z0-9-]{1,64}"))
		}
	case site.deviceID != "":
		f.Device.ID = site.deviceID
	}
}

func (t *Terminal) path(rel string) string {
	return filepath.Join(t.opts.Root, filepath.FromSlash(rel))
}

// placeholderFacts is a document in which every group holds the values an unknown group is left with:
// valid against the schema, so the document can be recorded, and never read by the policy.
func placeholderFacts(now time.Time) device.Facts {
	return device.Facts{
		Schema:      device.FactsSchema,
		CollectedAt: now,
		Device:      device.Device{ID: "unknown", Kind: device.KindOther, Stage: device.StageProduction},
		FR:          device.FR{Mode: "off", Purpose: "other"},
		Location:    device.Location{Category: "other"},
		Signage:     device.Signage{Evidence: "none"},
	}
}

// markUnknown records a group as unknown with a reason the schema accepts.
func markUnknown(f *device.Facts, group, source string, err error) {
	f.MarkUnknown(group, source, reasonError{truncate(err.Error(), maxReasonLen)})
}

type reasonError struct{ s string }

func (e reasonError) Error() string { return e.s }

// truncate cuts s to at most n runes.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// ceilSeconds is d in whole seconds rounded up, 0 for a negative d (a time in the future: a clock that
// was set back) and capped at the schema's maximum count.
func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	s := d / time.Second
	if d%time.Second != 0 {
		s++
	}
	if s > maxCount {
		return maxCount
	}
	return int(s)
}

// lastParse keeps the last parse of a file: parsing is a function of the bytes alone, so the same bytes
// give the same document without being parsed again (site.yaml and status.json are read at every
// evaluation and rarely change; parsing them was a third of gathering the facts). The document is
// shared between calls and must not be changed by its users. The zero value is ready; a nil *lastParse
// parses every time.
type lastParse[T any] struct {
	mu   sync.Mutex
	data []byte
	doc  T
	err  error
	ok   bool
}

func (p *lastParse[T]) parse(data []byte, parse func([]byte) (T, error)) (T, error) {
	if p == nil {
		return parse(data)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ok || !bytes.Equal(p.data, data) {
		p.doc, p.err = parse(data)
		p.data, p.ok = data, true
	}
	return p.doc, p.err
}

// readFile reads a whole file of at most limit bytes. Its errors never carry the path: the reason of an
// Unknown entry names the file by its relative Source already.
func readFile(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fileError(err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fileError(err)
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, fileError(err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// errMissing is a file that does not exist; callers that allow an absent file test for it.
var errMissing = errors.New("missing")

// fileError says what went wrong with a file without the absolute path, which depends on where the root
// is mounted and would make every reason differ between devices.
func fileError(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return errMissing
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

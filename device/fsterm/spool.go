package fsterm

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/faceguard/faceguard/device"
)

// consentSuffix names the sidecar that marks a capture kept under separate consent.
const consentSuffix = ".consent"

// collectSpool counts the raw capture spool into f.RawImages. It reads names and modification times
// only, never a capture's bytes.
func collectSpool(dir string, now time.Time, f *device.Facts) {
	r, err := countSpool(dir, now)
	if err != nil {
		markUnknown(f, device.GroupRawImages, SpoolPath, err)
		return
	}
	f.RawImages = r
}

func countSpool(dir string, now time.Time) (device.RawImages, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return device.RawImages{}, fileError(err)
	}
	if !st.IsDir() {
		return device.RawImages{}, errors.New("not a directory")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return device.RawImages{}, fileError(err)
	}
	sidecars := map[string]bool{}
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), consentSuffix) {
			sidecars[strings.TrimSuffix(e.Name(), consentSuffix)] = true
		}
	}
	var (
		r      device.RawImages
		oldest time.Duration
	)
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || strings.HasSuffix(name, consentSuffix) {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since the listing: the agent's own purge, or the terminal's
		}
		if err != nil {
			return device.RawImages{}, fileError(err)
		}
		r.Count++
		if sidecars[name] {
			r.Consented++
			continue
		}
		if age := now.Sub(info.ModTime()); age > oldest {
			oldest = age
		}
	}
	r.OldestAgeS = ceilSeconds(oldest)
	return r, nil
}

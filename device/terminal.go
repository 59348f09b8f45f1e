package device

import "context"

// Terminal is the seam between the agent and one terminal: facts in, actions out. device/fsterm is the
// reference implementation over the file layout of docs/terminal.md; a vendor may add another.
type Terminal interface {
	// Facts gathers the facts document. Groups that cannot be gathered are listed in Facts.Unknown and
	// the call still succeeds; an error means nothing could be gathered at all.
	Facts(ctx context.Context) (Facts, error)
}

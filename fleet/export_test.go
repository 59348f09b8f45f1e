package fleet

import (
	"context"
	"fmt"

	"github.com/faceguard/faceguard/wire"
)

// ApplyMessage applies a message on a device topic as the controller's workers do (handle, without the
// acknowledgement): the entry of FuzzControllerApply.
func (c *Controller) ApplyMessage(ctx context.Context, topic string, payload []byte) (bool, error) {
	dev, kind, _, err := wire.ParseDeviceTopic(topic)
	if err != nil {
		return false, fmt.Errorf("%w: %v", wire.ErrMessage, err)
	}
	return c.apply(ctx, dev, kind, payload)
}

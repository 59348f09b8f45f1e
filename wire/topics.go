// Package wire is the MQTT protocol v1 (DESIGN §8, contract): topics, message types and signed commands,
// shared by the agent, the fleet controller and the simulator. It holds no connection and no state.
//
// Nothing in this package may carry a face image, a template or a subject reference in clear: commands
// name subjects by a keyed hash, results and events carry counts and receipt hashes.
package wire

import (
	"fmt"
	"regexp"
	"strings"
)

// Root is the topic root of protocol v1.
const Root = "faceguard/v1"

// Version is the envelope's "v".
const Version = 1

// MaxPayload bounds every JSON message; a bundle chunk is at most ChunkSize. Anything larger is refused
// before it is parsed.
const MaxPayload = 256 << 10

// ChunkSize is the size of a bundle chunk on the wire (DESIGN §8).
const ChunkSize = 64 << 10

var deviceIDPattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// ValidDeviceID reports whether id may be used as a device id and topic level.
func ValidDeviceID(id string) bool { return deviceIDPattern.MatchString(id) }

// Device-side topics (device → controller).
func StateTopic(dev string) string      { return devTopic(dev, "state") }
func BirthTopic(dev string) string      { return devTopic(dev, "birth") }
func ComplianceTopic(dev string) string { return devTopic(dev, "compliance") }
func SubjectsTopic(dev string) string   { return devTopic(dev, "subjects") }
func EventTopic(dev string) string      { return devTopic(dev, "event") }
func BundleGetTopic(dev string) string  { return devTopic(dev, "bundle/get") }
func ResultTopic(dev, cmdID string) string {
	return devTopic(dev, "res/"+cmdID)
}

func devTopic(dev, leaf string) string { return Root + "/dev/" + dev + "/" + leaf }

// Controller-side topics (controller → device).
func CommandTopic(dev, typ string) string { return Root + "/cmd/" + dev + "/req/" + typ }
func BroadcastTopic(typ string) string    { return Root + "/bcast/req/" + typ }
func ChunkTopic(dev, rev string, n int) string {
	return fmt.Sprintf("%s/cmd/%s/bundle/%s/%d", Root, dev, rev, n)
}

// ControllerStateTopic is the controller's retained online/offline.
const ControllerStateTopic = Root + "/ctl/state"

// Subscriptions of a device: its own commands and chunks, and broadcasts.
func DeviceSubscriptions(dev string) []string {
	return []string{Root + "/cmd/" + dev + "/req/+", Root + "/cmd/" + dev + "/bundle/+/+", Root + "/bcast/req/+"}
}

// Topic kinds a controller receives from devices.
const (
	KindState      = "state"
	KindBirth      = "birth"
	KindCompliance = "compliance"
	KindSubjects   = "subjects"
	KindEvent      = "event"
	KindResult     = "res"
	KindBundleGet  = "bundle/get"
)

// ParseDeviceTopic splits a device-side topic into device id and kind ("res" topics also give the command
// id). It refuses anything outside the v1 device tree.
func ParseDeviceTopic(topic string) (dev, kind, cmdID string, err error) {
	rest, ok := strings.CutPrefix(topic, Root+"/dev/")
	if !ok {
		return "", "", "", fmt.Errorf("topic %q is not under %s/dev/", topic, Root)
	}
	dev, leaf, ok := strings.Cut(rest, "/")
	if !ok || !ValidDeviceID(dev) {
		return "", "", "", fmt.Errorf("topic %q: bad device id", topic)
	}
	switch leaf {
	case KindState, KindBirth, KindCompliance, KindSubjects, KindEvent, KindBundleGet:
		return dev, leaf, "", nil
	}
	if id, ok := strings.CutPrefix(leaf, "res/"); ok && validCommandID(id) {
		return dev, KindResult, id, nil
	}
	return "", "", "", fmt.Errorf("topic %q: unknown message kind", topic)
}

// ParseCommandTopic splits a command topic (device or broadcast) into the addressed device ("*" for a
// broadcast) and the command type.
func ParseCommandTopic(topic string) (dev, typ string, err error) {
	if typ, ok := strings.CutPrefix(topic, Root+"/bcast/req/"); ok && knownCommand(typ) {
		return "*", typ, nil
	}
	rest, ok := strings.CutPrefix(topic, Root+"/cmd/")
	if !ok {
		return "", "", fmt.Errorf("topic %q is not a command topic", topic)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[1] != "req" || !ValidDeviceID(parts[0]) || !knownCommand(parts[2]) {
		return "", "", fmt.Errorf("topic %q is not a command topic", topic)
	}
	return parts[0], parts[2], nil
}

// ParseChunkTopic splits a bundle chunk topic.
func ParseChunkTopic(topic string) (dev, rev string, n int, err error) {
	rest, ok := strings.CutPrefix(topic, Root+"/cmd/")
	if !ok {
		return "", "", 0, fmt.Errorf("topic %q is not a chunk topic", topic)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || parts[1] != "bundle" || !ValidDeviceID(parts[0]) || !validRevision(parts[2]) {
		return "", "", 0, fmt.Errorf("topic %q is not a chunk topic", topic)
	}
	if _, err := fmt.Sscanf(parts[3], "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != parts[3] {
		return "", "", 0, fmt.Errorf("topic %q: bad chunk number", topic)
	}
	return parts[0], parts[2], n, nil
}

var (
	commandIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	revisionPattern  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

func validCommandID(id string) bool { return commandIDPattern.MatchString(id) }

// validRevision keeps a bundle revision usable as one topic level.
func validRevision(rev string) bool { return revisionPattern.MatchString(rev) }

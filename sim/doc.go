// Package sim simulates face-recognition terminals for tests, demos and load: each simulated terminal is a
// root directory that follows the terminal contract (docs/terminal.md) exactly as a real one does, a fake
// terminal software process that writes status.json, enrols and recognises people, spools raw captures
// and obeys run/faceguard/control.json, and — in a Device — a real agent with a real MQTT connection
// judging it. A Profile says what kind of terminal it is and which faults it has (installed in a hotel
// room, sign removed, raw captures piling up, templates uploaded, face-only door, a minor without a
// guardian's consent, a withdrawal not yet purged, a coercive prompt…), so that the agents detect them and,
// where the policy allows, fix them.
//
// The simulator must never produce or handle real personal data: it writes only placeholder bytes (raw
// captures are a short text, templates are zero bytes), never a real face image or template, and its
// subject references are synthetic ("<device>-s-000123"), naming nobody.
//
// Simulated devices share one compiled policy (one *engine.Engine) and are told about file changes by
// the fake terminal (Terminal.OnChange → agent.Notify) instead of fsnotify, because inotify instances are
// limited to 128 per user and a load test runs thousands of devices in one process.
package sim

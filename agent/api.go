package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/faceguard/faceguard/device"
)

// The local decision API speaks OPA's REST shape ({"input": …} in, {"result": …} out) on a Unix socket,
// so terminal software can ask without a network port:
//
//	POST /v1/data/faceguard/decision   {"input": <facts>} judges those facts; no input: the agent's latest decision
//	POST /v1/data/faceguard/match      {"input": {"subject_ref": "…"}}: may this face match be used now?
//
// match answers from the gallery and the agent's current orders; the subject reference never leaves the
// device and is never logged. Any error is an answer of "no" with the reason.

const maxAPIBody = 1 << 20

// NewAPIHandler returns the local decision API's handler (served on a Unix socket by serveAPI; the
// benchmarks and tests also call it in process).
func (a *Agent) NewAPIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/data/faceguard/decision", a.apiDecision)
	mux.HandleFunc("POST /v1/data/faceguard/match", a.apiMatch)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "resource_not_found",
			"only POST /v1/data/faceguard/decision and POST /v1/data/faceguard/match are served")
	})
	return mux
}

// serveAPI listens on the Unix socket; the socket is replaced if a stale one is left from a crash.
func (a *Agent) serveAPI(ctx context.Context, path string) (stop func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	// Terminal software runs as its own user in the agent's group.
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	srv := &http.Server{Handler: a.NewAPIHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("local decision API stopped", "err", err)
		}
	}()
	a.log.Info("local decision API listening", "socket", path)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = os.Remove(path)
	}, nil
}

func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("api: %s exists and is not a socket", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("api: another process serves %s", path)
	}
	return os.Remove(path)
}

type apiRequest struct {
	Input json.RawMessage `json:"input"`
}

type apiResponse struct {
	Result any `json:"result"`
}

func (a *Agent) apiDecision(w http.ResponseWriter, r *http.Request) {
	req, ok := readAPIRequest(w, r)
	if !ok {
		return
	}
	if len(req.Input) == 0 || bytes.Equal(req.Input, []byte("null")) {
		s := a.current.Load()
		if s == nil {
			apiError(w, http.StatusServiceUnavailable, "not_ready", "no evaluation yet")
			return
		}
		if s.failSafe {
			apiError(w, http.StatusServiceUnavailable, "fail_safe", "the agent could not evaluate and failed safe: "+s.fault)
			return
		}
		writeJSON(w, http.StatusOK, apiResponse{Result: s.decision})
		return
	}
	facts, err := device.ParseFacts(req.Input)
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_parameter", err.Error())
		return
	}
	d, err := a.eng.Decide(r.Context(), &facts)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, apiResponse{Result: d})
}

// matchRequest is the input of /match: which subject the terminal matched.
type matchRequest struct {
	SubjectRef string `json:"subject_ref"`
}

func (a *Agent) apiMatch(w http.ResponseWriter, r *http.Request) {
	// The hot path: one read, one decode, one write.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxMatchBody+1))
	if err != nil || len(body) > maxMatchBody {
		apiError(w, http.StatusBadRequest, "invalid_parameter", `input must be {"subject_ref": "<the terminal's subject id>"}`)
		return
	}
	var req struct {
		Input matchRequest `json:"input"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Input.SubjectRef == "" || len(req.Input.SubjectRef) > 256 {
		apiError(w, http.StatusBadRequest, "invalid_parameter", `input must be {"subject_ref": "<the terminal's subject id>"}`)
		return
	}
	res, err := a.Match(r.Context(), req.Input.SubjectRef)
	if err != nil {
		// Deny, and say why: the terminal offers another way through.
		res = device.MatchResult{Allow: false, Reasons: []string{"error"},
			Message: device.Text{ZH: "暂时无法核验，请使用其他方式通行", EN: "cannot be checked right now; please use another way through"}}
		a.log.Warn("match could not be decided; denied", "err", err)
	}
	out, err := json.Marshal(apiResponse{Result: res})
	if err != nil {
		apiError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// maxMatchBody bounds a match request: a subject reference, not a document.
const maxMatchBody = 4 << 10

// Match decides whether a face match of subjectRef may be used now: from the gallery, the agent's current
// orders and the policy. The hot path of a terminal.
func (a *Agent) Match(ctx context.Context, subjectRef string) (device.MatchResult, error) {
	subj, err := a.term.LookupSubject(ctx, subjectRef)
	if err != nil {
		return device.MatchResult{}, err
	}
	allowed := false
	if s := a.current.Load(); s != nil {
		allowed = s.control.FaceRecognition.Allowed
	}
	return a.eng.Match(ctx, &device.MatchInput{Subject: subj, Terminal: device.MatchTerminal{FaceRecognitionAllowed: allowed}})
}

func readAPIRequest(w http.ResponseWriter, r *http.Request) (apiRequest, bool) {
	var req apiRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_parameter", "read body: "+err.Error())
		return req, false
	}
	if len(body) > maxAPIBody {
		apiError(w, http.StatusRequestEntityTooLarge, "invalid_parameter", fmt.Sprintf("body larger than %d bytes", maxAPIBody))
		return req, false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return req, true
	}
	if err := json.Unmarshal(body, &req); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_parameter", "body is not JSON: "+err.Error())
		return req, false
	}
	return req, true
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"code": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/filing"
	"github.com/faceguard/faceguard/wire"
)

// runFleet dispatches `faceguard fleet …`.
func runFleet(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		return usageError{errors.New("fleet: usage: faceguard fleet serve|status|push|reevaluate|forget|report|filing …")}
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, e, args[1:])
	case "status", "push", "reevaluate", "forget", "report", "filing":
		return runFleetClient(ctx, e, args[0], args[1:])
	}
	return usageError{fmt.Errorf("fleet: unknown subcommand %q", args[0])}
}

// client talks to a running controller's API.
type client struct {
	base  string
	token string
	http  *http.Client
}

func (c *client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("the controller at %s does not answer (is `faceguard fleet serve` or `faceguard demo` running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s", method, path, e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (c *client) postJSON(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, bytes.NewReader(b), "application/json", out)
}

func runFleetClient(ctx context.Context, e env, sub string, args []string) error {
	fs := flag.NewFlagSet("fleet "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	server := fs.String("server", envOr("FACEGUARD_SERVER", "http://127.0.0.1:8080"), "the controller's `URL` (env FACEGUARD_SERVER)")
	tokenFile := fs.String("token-file", os.Getenv("FACEGUARD_TOKEN_FILE"), "the API token `FILE` for commands (api.token of keys gen; env FACEGUARD_TOKEN_FILE)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	devices := fs.String("devices", "", "comma-separated device ids (default: every device)")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for every device's answer")
	subject := fs.String("subject", "", "forget: the subject `REF`erence (turned into its keyed hash by the controller; never sent)")
	bundleFile := fs.String("bundle", "", "push: the signed bundle `FILE`")
	since := fs.String("since", "", "report: from `DATE` (YYYY-MM-DD); default 30 days ago")
	format := fs.String("format", "html", "report: html or json")
	out := fs.String("o", "", "report: write to `FILE` instead of stdout")
	filed := fs.String("filed", "", "filing: record the filing made on `DATE` (needs --ref)")
	ref := fs.String("ref", "", "filing: the filing's reference number")
	change := fs.String("change", "", "filing: record a material change on `DATE`")
	stopped := fs.String("stopped", "", "filing: record that face recognition stopped on `DATE`")
	if err := parse(fs, args); err != nil {
		return err
	}
	u, err := url.Parse(*server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Errorf("--server %q: want http://host:port", *server)}
	}
	c := &client{base: strings.TrimRight(*server, "/"), http: &http.Client{Timeout: 30 * time.Second}}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return usageError{fmt.Errorf("token file: %w", err)}
		}
		c.token = strings.TrimSpace(string(b))
	}
	targets := []string{wire.Broadcast}
	if *devices != "" {
		targets = strings.Split(*devices, ",")
	}

	switch sub {
	case "status":
		return fleetStatus(ctx, e, c, *asJSON)
	case "forget":
		if *subject == "" {
			return usageError{errors.New("fleet forget: --subject REF is required")}
		}
		var cmd fleet.Command
		if err := c.postJSON(ctx, "/api/forget", map[string]string{"subject_ref": *subject}, &cmd); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "forget-subject %s sent to every device (the subject is named by its keyed hash only)\n", cmd.ID)
		return waitCommands(ctx, e, c, []string{cmd.ID}, *timeout, *asJSON)
	case "reevaluate":
		var ids []string
		for _, t := range targets {
			var cmd fleet.Command
			if err := c.postJSON(ctx, "/api/commands", map[string]any{"type": wire.CmdReevaluate, "target": t}, &cmd); err != nil {
				return err
			}
			ids = append(ids, cmd.ID)
		}
		return waitCommands(ctx, e, c, ids, *timeout, *asJSON)
	case "push":
		if *bundleFile == "" {
			return usageError{errors.New("fleet push: --bundle FILE is required")}
		}
		data, err := os.ReadFile(*bundleFile)
		if err != nil {
			return usageError{err}
		}
		var ids []string
		for _, t := range targets {
			var cmd fleet.Command
			if err := c.do(ctx, http.MethodPost, "/api/bundles?target="+url.QueryEscape(t), bytes.NewReader(data),
				"application/gzip", &cmd); err != nil {
				return err
			}
			ids = append(ids, cmd.ID)
		}
		fmt.Fprintf(e.stdout, "bundle offered; devices pull it in chunks and verify it\n")
		return waitCommands(ctx, e, c, ids, *timeout, *asJSON)
	case "report":
		q := url.Values{"format": {*format}}
		if *since != "" {
			q.Set("since", *since)
		}
		var body []byte
		if err := c.do(ctx, http.MethodGet, "/api/report?"+q.Encode(), nil, "", &body); err != nil {
			return err
		}
		if *out != "" {
			return os.WriteFile(*out, body, 0o644)
		}
		_, err := e.stdout.Write(body)
		return err
	case "filing":
		for kind, date := range map[string]string{"filed": *filed, "material_change": *change, "fr_stopped": *stopped} {
			if date == "" {
				continue
			}
			if kind == "filed" && *ref == "" {
				return usageError{errors.New("fleet filing: --filed needs --ref, the filing's reference number")}
			}
			if err := c.postJSON(ctx, "/api/filing/records", fleet.FilingRecord{Kind: kind, Date: date, Reference: *ref}, nil); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "recorded %s on %s\n", kind, date)
		}
		var body []byte
		if err := c.do(ctx, http.MethodGet, "/api/filing", nil, "", &body); err != nil {
			return err
		}
		return printFiling(e, body, *asJSON)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// fleetStatus prints the fleet in a terminal.
func fleetStatus(ctx context.Context, e env, c *client, asJSON bool) error {
	var ov fleet.Overview
	if err := c.do(ctx, http.MethodGet, "/api/overview", nil, "", &ov); err != nil {
		return err
	}
	var page struct {
		Devices []fleet.Device `json:"devices"`
		Total   int            `json:"total"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/devices?status=non_compliant&limit=200", nil, "", &page); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"overview": ov, "non_compliant": page.Devices})
	}
	w := tabwriter.NewWriter(e.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(w, "SITE\tDEVICES\tCOMPLIANT\tNON-COMPLIANT\tCRITICAL\tOFFLINE\tFAIL-SAFE")
	for _, s := range append(ov.Sites, ov.Total) {
		name := s.Site
		if name == "" {
			name = "(all)"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", name, s.Devices, s.Compliant, s.NonCompliant, s.Critical, s.Offline, s.FailSafe)
	}
	w.Flush()
	if len(page.Devices) > 0 {
		fmt.Fprintf(e.stdout, "\nnon-compliant devices (%d):\n", page.Total)
		w = tabwriter.NewWriter(e.stdout, 0, 2, 2, ' ', 0)
		for _, d := range page.Devices {
			var controls []string
			for _, f := range d.Failing {
				controls = append(controls, f.Control+"("+f.Severity+")")
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", d.ID, d.Site, d.State, strings.Join(controls, " "))
		}
		w.Flush()
	}
	return nil
}

// waitCommands follows commands until every device answered or the time is up, prints each device's
// answer, and fails if any device did not confirm.
func waitCommands(ctx context.Context, e env, c *client, ids []string, timeout time.Duration, asJSON bool) error {
	deadline := time.Now().Add(timeout)
	details := make([]fleet.CommandDetail, len(ids))
	for {
		done := true
		for i, id := range ids {
			if err := c.do(ctx, http.MethodGet, "/api/commands/"+id, nil, "", &details[i]); err != nil {
				return err
			}
			done = done && details[i].Done
		}
		if done || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(details); err != nil {
			return err
		}
	}
	var missing []string
	for _, d := range details {
		sort.Slice(d.Results, func(i, j int) bool { return d.Results[i].Dev < d.Results[j].Dev })
		for _, r := range d.Results {
			ok := r.Status == wire.ResultSucceeded
			if !ok {
				missing = append(missing, r.Dev)
			}
			if asJSON {
				continue
			}
			mark := "✓"
			if !ok {
				mark = "✗"
			}
			line := fmt.Sprintf("%s %-24s %-10s", mark, r.Dev, r.Status)
			if r.Status == fleet.CommandPending || r.Status == wire.ResultAccepted {
				line = fmt.Sprintf("%s %-24s %-10s no final answer within %s", mark, r.Dev, "timeout", timeout)
			}
			if r.Reason != "" {
				line += "  " + r.Reason
			}
			if len(r.Result) > 0 {
				var compact bytes.Buffer
				if json.Compact(&compact, r.Result) == nil {
					line += "  " + compact.String()
				}
			}
			fmt.Fprintln(e.stdout, line)
		}
	}
	if len(missing) > 0 {
		return failed{fmt.Sprintf("%d device(s) did not confirm: %s", len(missing), strings.Join(missing, ", "))}
	}
	if !asJSON {
		fmt.Fprintln(e.stdout, "every device confirmed")
	}
	return nil
}

func printFiling(e env, body []byte, asJSON bool) error {
	if asJSON {
		_, err := e.stdout.Write(body)
		return err
	}
	var st filing.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return err
	}
	lower := ""
	if st.LowerBound {
		lower = " (a lower bound: some devices' sketches are missing)"
	}
	fmt.Fprintf(e.stdout, "persons stored   %d ± %d%s — band %s (warning from %d, threshold %d)\n",
		st.Count, st.ErrorBound, lower, st.Band, st.WarningFrom, st.Threshold)
	fmt.Fprintf(e.stdout, "filing           %s\n", st.State)
	fmt.Fprintf(e.stdout, "                 %s\n                 %s\n", st.Explain.ZH, st.Explain.EN)
	for name, d := range map[string]*filing.Deadline{"filing due": st.Filing, "update due": st.Change, "cancellation due": st.Cancel} {
		if d.Open() {
			over := ""
			if d.Overdue {
				over = " — OVERDUE"
			}
			fmt.Fprintf(e.stdout, "%-16s %s (%d working days left)%s\n", name, d.Due, d.Remaining, over)
		}
	}
	if st.Filed != nil {
		fmt.Fprintf(e.stdout, "filed            %s, reference %s\n", st.Filed.Date, st.Filed.Reference)
	}
	if st.Estimate.Warning.EN != "" {
		fmt.Fprintf(e.stdout, "calendar         %s\n", st.Estimate.Warning.EN)
	}
	for _, p := range st.Problems {
		fmt.Fprintf(e.stdout, "ignored record   %s\n", p)
	}
	return nil
}

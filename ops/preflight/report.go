package preflight

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Exit statuses of the preflight command.
const (
	// ExitOK: every namespace the stack needs is registered.
	ExitOK = 0
	// ExitNotRegistered: some are not (the report prints the commands that register them), or
	// the caller is not among the stack's cluster admins (-stack).
	ExitNotRegistered = 1
	// ExitBadInput: the check could not run or a question failed (flags, credentials,
	// permissions, network, an answer that does not parse).
	ExitBadInput = 2
)

// Report is the registration state of every namespace the stack needs in one subscription.
type Report struct {
	// Subscription is the subscription id checked.
	Subscription string `json:"subscription"`
	// Providers are the namespaces, in the order asked.
	Providers []Status `json:"providers"`
	// Admins says whether the caller is among a stack's cluster admins (nil unless asked).
	Admins *AdminCheck `json:"clusterAdmins,omitempty"`
}

// NotRegistered are the namespaces ARM says are not registered (NotRegistered, Unregistered,
// Registering, or any other state but Registered).
func (r Report) NotRegistered() []Status {
	var out []Status
	for _, s := range r.Providers {
		if s.Error == "" && !s.Registered() {
			out = append(out, s)
		}
	}
	return out
}

// Failed are the namespaces whose question failed.
func (r Report) Failed() []Status {
	var out []Status
	for _, s := range r.Providers {
		if s.Error != "" {
			out = append(out, s)
		}
	}
	return out
}

// ExitCode is ExitBadInput when a question failed, else ExitNotRegistered when a namespace is not
// registered or the caller is not a cluster admin, else ExitOK.
func (r Report) ExitCode() int {
	switch {
	case len(r.Failed()) > 0:
		return ExitBadInput
	case len(r.NotRegistered()) > 0, r.Admins != nil && r.Admins.Fails():
		return ExitNotRegistered
	}
	return ExitOK
}

// Commands are the az commands that register the namespaces that are not registered, then one
// check per namespace (each prints Registered once done). They name the subscription, so they
// act on the one checked whatever az's current subscription is.
func (r Report) Commands() []string {
	todo := r.NotRegistered()
	var cmds []string
	for _, s := range todo {
		cmds = append(cmds, fmt.Sprintf("az provider register --namespace %s --subscription %s", s.Name, r.Subscription))
	}
	for _, s := range todo {
		cmds = append(cmds, fmt.Sprintf("az provider show -n %s --subscription %s --query registrationState -o tsv", s.Name, r.Subscription))
	}
	return cmds
}

// WriteText writes the report for people: one line per namespace (its state, and the types that
// need it), then what to do.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Resource providers the stack needs in subscription %s:\n", r.Subscription)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, s := range r.Providers {
		state := s.State
		switch {
		case s.Error != "":
			state = "ERROR"
		case s.RegisteredByDefault:
			state = "Registered by default (not asked)"
		case s.State != StateRegistered:
			state = s.State + " <- register"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Name, state, s.Why())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Failed() {
		fmt.Fprintf(&b, "error: %s\n", s.Error)
	}
	todo := r.NotRegistered()
	switch {
	case len(todo) > 0:
		names := make([]string, len(todo))
		for i, s := range todo {
			names[i] = s.Name
		}
		fmt.Fprintf(&b, "\n%d not registered (%s): `pulumi up` would fail with MissingSubscriptionRegistration.\n",
			len(todo), strings.Join(names, ", "))
		b.WriteString("Register them (needs the register action on each provider, which Contributor and Owner have),\n" +
			"then repeat the check until each prints Registered (registration takes a few minutes):\n\n")
		for _, c := range r.Commands() {
			b.WriteString("  " + c + "\n")
		}
	case len(r.Failed()) == 0:
		fmt.Fprintf(&b, "All %d are registered.\n", len(r.Providers))
	}
	if a := r.Admins; a != nil {
		mark := "ok"
		switch a.Verdict {
		case AdminNot:
			mark = "NOT AN ADMIN"
		case AdminUnset, AdminUnknown:
			mark = "warning"
		case AdminNotApplicable:
			mark = "-"
		}
		fmt.Fprintf(&b, "\nCluster admins of stack %s: %s (%s): %s.\n", a.Stack, mark, a.Verdict, a.Detail)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// jsonReport is the JSON form: the report plus what to do and the exit status.
type jsonReport struct {
	Report
	Commands []string `json:"commands"`
	ExitCode int      `json:"exitCode"`
}

// JSON is the report as one line of JSON, with the commands and the exit status.
func (r Report) JSON() (string, error) {
	cmds := r.Commands()
	if cmds == nil {
		cmds = []string{}
	}
	j, err := json.Marshal(jsonReport{Report: r, Commands: cmds, ExitCode: r.ExitCode()})
	if err != nil {
		return "", fmt.Errorf("encoding the report: %w", err)
	}
	return string(j), nil
}

package observability

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// DashboardJSON is the Grafana dashboard (grafana-dashboard.json next to this file): import it
// into Azure Managed Grafana or any Grafana with a Prometheus data source pointing at the Azure
// Monitor workspace's query endpoint.
//
//go:embed grafana-dashboard.json
var DashboardJSON []byte

// Dashboard is the part of a Grafana dashboard the tests read.
type Dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// Panel is one dashboard panel.
type Panel struct {
	ID      int    `json:"id"`
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
}

// ParseDashboard decodes the dashboard's title, panels, queries and variables.
func ParseDashboard(b []byte) (Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("dashboard JSON: %w", err)
	}
	return d, nil
}

// grafanaVariables are the dashboard's variables and built-ins with a value that keeps an
// expression valid PromQL, for parsing.
var grafanaVariables = regexp.MustCompile(`\$\{?(__rate_interval|__interval|__range|namespace|scaler)\}?`)

// AsPromQL replaces Grafana variables in expr so Prometheus can parse it.
func AsPromQL(expr string) string {
	return grafanaVariables.ReplaceAllStringFunc(expr, func(v string) string {
		name := strings.Trim(v, "${}")
		if strings.HasPrefix(name, "__") {
			return "5m"
		}
		return "x" // inside a label matcher's quotes
	})
}

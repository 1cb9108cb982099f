// Command azproxy puts Azure's distance and limits between the programs and
// a local Azurite (harness/azproxy): every request pays -rtt (± -jitter),
// and past -queue-rate requests/s on one queue or -account-rate on the
// account the answer is Azure's 503 ServerBusy. It listens on free loopback
// ports and prints one JSON line with the queue, table and control URLs:
//
//	{"queue":"http://127.0.0.1:41001","table":"http://127.0.0.1:41002","control":"http://127.0.0.1:41003"}
//
// Point a connection string's QueueEndpoint and TableEndpoint at the first
// two (add the account: .../devstoreaccount1). GET <control>/counts returns
// the requests by operation and the 503s; POST <control>/settings?rtt=20ms
// changes the settings. SIGTERM or SIGINT stops it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/aks-edw/aks-edw/harness/azproxy"
)

func main() {
	queueUp := flag.String("queue-upstream", "", "the queue service to forward to, e.g. http://127.0.0.1:10001 (required)")
	tableUp := flag.String("table-upstream", "", "the table service to forward to, e.g. http://127.0.0.1:10002 (required)")
	rtt := flag.String("rtt", "0s", "round-trip time added to every request")
	jitter := flag.String("jitter", "0s", "each request's added time is spread over rtt ± jitter")
	queueRate := flag.String("queue-rate", "0", "requests/s one queue serves before 503 ServerBusy (0: no limit; Azure's target: 2000)")
	accountRate := flag.String("account-rate", "0", "requests/s the account serves before 503 ServerBusy (0: no limit; Azure's target: 20000)")
	burst := flag.String("burst", "100ms", "unused capacity a rate keeps (rate × burst requests)")
	flag.Parse()
	vals := map[string]string{"rtt": *rtt, "jitter": *jitter, "queue-rate": *queueRate, "account-rate": *accountRate, "burst": *burst}
	opts, err := azproxy.ParseOptions(func(k string) string { return vals[k] })
	if err == nil && (*queueUp == "" || *tableUp == "") {
		err = fmt.Errorf("-queue-upstream and -table-upstream are required")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "azproxy: %v\n", err)
		os.Exit(2)
	}
	if err := run(opts, *queueUp, *tableUp); err != nil {
		fmt.Fprintf(os.Stderr, "azproxy: %v\n", err)
		os.Exit(1)
	}
}

func run(opts azproxy.Options, queueUp, tableUp string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p, err := azproxy.New(opts)
	if err != nil {
		return err
	}
	defer p.Close()
	q, err := p.Listen(azproxy.Queue, queueUp)
	if err != nil {
		return err
	}
	t, err := p.Listen(azproxy.Table, tableUp)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: p.ControlHandler()}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	if err := json.NewEncoder(os.Stdout).Encode(map[string]string{"queue": q, "table": t, "control": "http://" + l.Addr().String()}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// Command consumer reads JSON messages from an Azure Storage queue and stores
// one entity per message in an Azure table. It is configured from the
// environment (see docs/programs.md, or run consumer -h); a bad configuration
// exits with status 2 and a message naming each bad setting, anything else is
// retried.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/aks-edw/aks-edw/app/consumer"
	"github.com/aks-edw/aks-edw/app/storage"
)

// exitConfig is the exit status for a configuration the program cannot run
// with.
const exitConfig = 2

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status. args is the command
// line after the program name; environ (os.Environ) is only searched for
// misspelt settings, getenv reads them.
func run(ctx context.Context, args, environ []string, getenv func(string) string, stdout, stderr io.Writer) int {
	start := time.Now()
	if code, exit := consumer.HandleArgs(args, stdout, stderr); exit {
		return code // -h: the settings are listed before any is read
	}
	unknown := consumer.UnknownSettings(environ)
	cfg, err := consumer.LoadConfig(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "consumer: invalid configuration:\n%v\n", err)
		for _, u := range unknown {
			fmt.Fprintf(stderr, "warning: %s\n", u)
		}
		return exitConfig
	}
	log := consumer.NewLogger(stdout, cfg.LogLevel)
	for _, u := range unknown {
		attrs := []any{"name", u.Name}
		if u.Closest != "" {
			attrs = append(attrs, "didYouMean", u.Closest)
		}
		log.Warn("unknown setting ignored", attrs...)
	}

	clients, err := storage.NewClients(cfg.Storage, storage.NewHTTPClient(cfg.Concurrency))
	if err != nil {
		fmt.Fprintf(stderr, "consumer: invalid configuration:\n%v\n", err)
		return exitConfig
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c, err := consumer.New(cfg, clients, log, reg)
	if err != nil {
		fmt.Fprintf(stderr, "consumer: %v\n", err)
		return 1
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		fmt.Fprintf(stderr, "consumer: invalid configuration:\n%s=%q: cannot listen: %v\n", consumer.EnvHTTPAddr, cfg.HTTPAddr, err)
		return exitConfig
	}
	srv := &http.Server{Handler: c.Handler(reg), ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("consumer starting", "httpAddr", ln.Addr().String(), "queue", cfg.Storage.QueueName, "table", cfg.Storage.TableName,
		"concurrency", cfg.Concurrency, "batchSize", cfg.BatchSize, "visibilityTimeout", cfg.VisibilityTimeout.String(),
		"maxDeliveries", cfg.MaxDeliveries, "drainTimeout", cfg.DrainTimeout.String(), "tableBatch", cfg.TableBatch,
		"exitWhenEmpty", cfg.ExitWhenEmpty)

	runErr := c.Run(ctx)

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("http server shutdown", "err", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http server", "err", err)
	}
	if runErr != nil {
		log.Error("consumer stopped", "err", runErr)
		return 1
	}
	log.Info("consumer stopped", "uptime", time.Since(start).String())
	return 0
}

// Command ferretdb-local runs FerretDB 1.x with its SQLite backend on loopback.
//
// FerretDB is embedded as a library because the upstream binary built with
// `go install` panics at start-up (its version file is not in the module zip).
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only with -debug-addr
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:17018", "TCP address to listen on")
	dir := flag.String("dir", "./ferretdb-data", "data directory (created if missing)")
	memory := flag.Bool("memory", false, "keep data in memory only")
	sync := flag.String("sync", "full", "SQLite synchronous mode: full, or normal (a commit survives a crash of this process but not of the machine)")
	debug := flag.String("debug-addr", "", "loopback address for Go's /debug/pprof (off when empty)")
	flag.Parse()

	abs, err := filepath.Abs(*dir)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		log.Fatal(err)
	}
	query := url.Values{}
	if *memory {
		query.Set("mode", "memory")
	}
	switch *sync {
	case "full":
	case "normal":
		query.Add("_pragma", "synchronous(normal)")
	default:
		log.Fatalf("-sync: want full or normal, got %q", *sync)
	}
	sqliteURL := "file:" + abs + "/"
	if len(query) > 0 {
		sqliteURL += "?" + query.Encode()
	}
	if *debug != "" {
		go func() { log.Print(http.ListenAndServe(*debug, nil)) }()
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *addr},
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
		Logger:    slog.New(lazyHandler{base: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})}),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// MongoDBURI() must not be called before Run: it can deadlock.
	log.Printf("FerretDB (sqlite %s) on mongodb://%s/", sqliteURL, *addr)
	f.Run(ctx)
}

// lazyHandler defers WithAttrs and WithGroup until a record is actually written. FerretDB
// derives a logger with the SQL text and arguments for every statement; the text handler
// would format them at once, a twentieth of the server's CPU under load, only to drop them
// below the warning level.
type lazyHandler struct {
	base slog.Handler
	ops  []func(slog.Handler) slog.Handler
}

func (h lazyHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.base.Enabled(ctx, level)
}

func (h lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	inner := h.base
	for _, op := range h.ops {
		inner = op(inner)
	}
	return inner.Handle(ctx, r)
}

func (h lazyHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.with(func(inner slog.Handler) slog.Handler { return inner.WithAttrs(attrs) })
}

func (h lazyHandler) WithGroup(name string) slog.Handler {
	return h.with(func(inner slog.Handler) slog.Handler { return inner.WithGroup(name) })
}

func (h lazyHandler) with(op func(slog.Handler) slog.Handler) slog.Handler {
	return lazyHandler{base: h.base, ops: append(slices.Clip(h.ops), op)}
}

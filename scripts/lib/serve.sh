# Sourced by the client checks (python-, typescript-, schemathesis-check.sh): builds keyward and
# starts `keyward serve` on a fresh SQLite file in $WORK on a free local port, waiting until it
# listens. Needs ROOT (the repository) and WORK (a scratch directory); sets KEYWARD, PORT, BASE,
# SERVER_PID and ROOT_KEY (printed once on first start). Leaves the current directory at $ROOT.
# KEYWARD_LOG, when set, is passed on. The caller's EXIT trap calls stop_keyward.

SERVER_PID=""

# Stops the server start_keyward started, if any.
stop_keyward() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}

start_keyward() {
    local label="$1"
    echo "$label: building keyward"
    cd "$ROOT"
    cargo build --quiet -p keyward-server --bin keyward
    local target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" = /* ]] || target="$ROOT/$target"
    KEYWARD="$target/debug/keyward"

    PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    BASE="http://127.0.0.1:$PORT"
    (cd "$WORK" && exec "$KEYWARD" serve --bind "127.0.0.1:$PORT" --database "sqlite://$WORK/k.db" \
        >"$WORK/serve.out" 2>"$WORK/serve.err") &
    SERVER_PID=$!

    # The root key is the third line keyward prints on its first start.
    ROOT_KEY=""
    for _ in $(seq 1 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "keyward serve exited:" >&2
            cat "$WORK/serve.err" >&2
            exit 1
        fi
        ROOT_KEY="$(sed -n 3p "$WORK/serve.out" 2>/dev/null || true)"
        if [[ -n "$ROOT_KEY" ]] && python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1).close()" 2>/dev/null; then
            return 0
        fi
        ROOT_KEY=""
        sleep 0.1
    done
    echo "keyward serve printed no root key or did not listen" >&2
    cat "$WORK/serve.err" >&2
    exit 1
}

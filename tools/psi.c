/* psi: the command-line tool (DESIGN §1): run, gc, store, store-server,
 * stats, policy, dry-run, help.
 *
 * Dispatch and help text live here; each subcommand is its own file. Help
 * goes to stdout (asked for); usage errors go to stderr with exit 2. */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "psi_tool.h"

#ifndef PSI_VERSION
#define PSI_VERSION "unknown"
#endif

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    const char *usage;
} command;

static const command commands[] = {
    {"run", cmd_run, "run a program with libpsinterpose preloaded",
     "usage: psi run [OPTIONS] [--] COMMAND [ARGS...]\n"
     "\n"
     "Runs COMMAND with libpsinterpose.so preloaded and the PSI_* variables set.\n"
     "\n"
     "  --threshold SIZE   proxy payloads of at least SIZE bytes (1048576, 64K, 1MiB)\n"
     "  --store URL        store connector: file:///dir, shm://, redis://..., zmq://...\n"
     "  --peer ADDR        a peer known to be interposed: host:port, [v6]:port,\n"
     "                     host:*, unix:/path; repeatable, added to PSI_PEERS\n"
     "  --pipes            offer framing on pipes and FIFOs this program writes\n"
     "  --stats FILE       append one JSON line per process at exit (or 'stderr')\n"
     "  --log LEVEL        error, warn, info or debug\n"
     "  --log-file FILE    write the interposer's log to FILE instead of stderr\n"
     "  --policy FILE      the policy file (docs/policy.md); checked first: psi run\n"
     "                     refuses to start (exit 2) if it has errors\n"
     "  -h, --help         show this help\n"
     "\n"
     "The library is looked up next to the psi binary, then in ../lib/.\n"
     "Exit status: COMMAND's, or 2 for a bad option, 126/127 if it cannot run.\n"},
    {"gc", cmd_gc, "remove expired store objects and dead registry entries",
     "usage: psi gc [--store URL]... [--policy FILE]\n"
     "\n"
     "Removes what dead or finished processes left behind, in every store: references\n"
     "past their expiry, objects nobody references, temporary files of dead writers;\n"
     "then registry entries of listeners that no longer listen.\n"
     "\n"
     "  --store URL        clean this store only; repeatable (default: PSI_STORE, the\n"
     "                     policy's connectors and every connector's default store;\n"
     "                     a default whose server is not running is skipped)\n"
     "  --policy FILE      take the policy's connectors from FILE (default: PSI_POLICY)\n"
     "  -h, --help         show this help\n"
     "\n"
     "Exit status: 0; 1 if a store or the registry could not be cleaned; 2 for a bad\n"
     "option, URL or policy. docs/store-cli.md describes the output.\n"},
    {"store", cmd_store, "list what the stores hold (ls), or sum it up (du)",
     "usage: psi store ls [--store URL]... [--policy FILE] [--json] [--sort size|age]\n"
     "       psi store du [--store URL]... [--policy FILE] [--json]\n"
     "\n"
     "ls  one row per object: CONNECTOR, KEY, SIZE, AGE (since the put), REFS (tokens\n"
     "    not yet resolved), EXPIRES (until gc may remove it), WHERE (path, server,\n"
     "    segment); then one line per store that is not running or cannot list.\n"
     "du  one row per store: OBJECTS, BYTES, REFERENCED (objects with refs > 0),\n"
     "    OLDEST (age of the oldest object), and a TOTAL row.\n"
     "\n"
     "  --store URL        this store only; repeatable (default: PSI_STORE, the\n"
     "                     policy's connectors and every connector's default store;\n"
     "                     a default whose server is not running is noted, no error)\n"
     "  --policy FILE      take the policy's connectors from FILE (default: PSI_POLICY)\n"
     "  --json             print one JSON object instead of the table\n"
     "  --sort KEY         ls: size (largest first) or age (oldest first); default:\n"
     "                     store by store, in the connector's order\n"
     "  -h, --help         show this help\n"
     "\n"
     "Exit status: 0; 1 if a store could not be opened or listed; 2 for a bad option,\n"
     "URL or policy. Output and JSON schema: docs/store-cli.md.\n"},
    {"stats", cmd_stats, "sum PSI_STATS files into a table",
     "usage: psi stats [--bytes] [--json] FILE...\n"
     "\n"
     "Reads the JSON lines that PSI_STATS=FILE appends (one per process) and\n"
     "prints one row per process and a TOTAL row. FILE '-' reads stdin.\n"
     "\n"
     "  --bytes            print byte counts as raw numbers\n"
     "  --json             print only the totals, as one JSON object\n"
     "  -h, --help         show this help\n"
     "\n"
     "Malformed lines are reported as FILE:LINE on stderr and skipped.\n"
     "Exit status: 0; 1 if a FILE cannot be read or no valid line was found.\n"},
    {"policy", cmd_policy, "check a policy file, or explain its decision for a send",
     "usage: psi policy check FILE...\n"
     "       psi policy explain FILE --channel CH --size SIZE [--peer ADDR]\n"
     "                               [--direction send|recv] [--exe NAME] [--caller FN]...\n"
     "\n"
     "check    lists every error and warning as FILE:LINE:COL: error|warning: MSG,\n"
     "         then one line per file. Exit status: 0 (warnings allowed), 2 if any\n"
     "         file has an error.\n"
     "explain  shows, rule by rule, why each earlier rule does not match the send\n"
     "         described by the options, which rule matches, and the decision\n"
     "         (action, connector, lifetime, ttl, threshold). PSI_THRESHOLD,\n"
     "         PSI_PEERS and PSI_STORE apply as they would at run time.\n"
     "\n"
     "  --channel CH       tcp, unix, pipe, udp, mpi or zmq (required)\n"
     "  --size SIZE        the write's size: 4096, 64K, 4MiB (required)\n"
     "  --peer ADDR        ip:port, [v6addr]:port, unix:/path or unix:@abstract\n"
     "  --direction D      send (default) or recv\n"
     "  --exe NAME         the program (its basename is matched)\n"
     "  --caller FN        a function on the call stack; repeatable\n"
     "  -h, --help         show this help\n"
     "\n"
     "The policy language: docs/policy.md.\n"},
    {"dry-run", cmd_dryrun, "observe a program tree and report what would be proxied",
     "usage: psi dry-run [OPTIONS] [--] COMMAND [ARGS...]\n"
     "\n"
     "Runs COMMAND, its children and the programs they exec in observe-only mode:\n"
     "nothing is framed, nothing is stored, nothing on the wire changes. Every send\n"
     "on a socket or pipe is recorded with the decision the policy would take, and\n"
     "at the end a table per rule, call site and peer and a threshold sweep (4 KiB\n"
     "to 256 MiB) are printed on stderr.\n"
     "\n"
     "  --policy FILE      decide with this policy file (refused if it has errors)\n"
     "  --threshold SIZE   the default threshold (1048576, 64K, 1MiB)\n"
     "  --json FILE        write the report as JSON ('-': stdout)\n"
     "  --html FILE        write the report as one self-contained HTML page\n"
     "  -h, --help         show this help\n"
     "\n"
     "Exit status: COMMAND's (128 + N if a signal N ended it), 2 for a bad option\n"
     "or policy, 126/127 if COMMAND cannot run.\n"},
    {"store-server", cmd_store_server, "serve store objects to peers over ZeroMQ (zmq://)",
     "usage: psi store-server [--bind ENDPOINT]... [--advertise HOST:PORT]\n"
     "                        [--max-bytes SIZE] [--foreground] [--idle-exit SECONDS]\n"
     "                        [--log-file FILE]\n"
     "       psi store-server --status[=URL]\n"
     "\n"
     "Keeps objects of the zmq store in memory and serves puts, gets, releases,\n"
     "listings and stats to peers (docs/store-zmq.md). Objects outlive their\n"
     "sender; each is dropped when its last token is released or its TTL passes.\n"
     "A put of the same bytes twice stores them once. A program using\n"
     "PSI_STORE=zmq:// starts a server on demand; start one by hand to choose\n"
     "its endpoints or size.\n"
     "\n"
     "  --bind ENDPOINT    tcp://HOST:PORT, tcp://[V6]:PORT or ipc:///path; repeatable\n"
     "                     (default: ipc://RUNTIME_DIR/store.sock, the node-local\n"
     "                     endpoint). No authentication: bind tcp to loopback unless\n"
     "                     the network is trusted.\n"
     "  --advertise H:P    the numeric HOST:PORT written into tokens, for receivers\n"
     "                     on other nodes (default: the address the sender used)\n"
     "  --max-bytes SIZE   memory for objects (default: a quarter of RAM); a put\n"
     "                     beyond it is refused with \"store full\" and the sender\n"
     "                     sends the payload inline\n"
     "  --foreground       do not detach (default: detach once bound)\n"
     "  --idle-exit SECS   exit after SECS without requests while holding no object\n"
     "                     (default 0: never; an auto-started server uses 600)\n"
     "  --log-file FILE    append the log there instead of stderr\n"
     "  --status[=URL]     print the stats and objects of the server at URL\n"
     "                     (default: the node-local one), then exit\n"
     "  -h, --help         show this help\n"
     "\n"
     "SIGTERM or SIGINT: exit cleanly, dropping every object. Exit status: 0; 1 if\n"
     "an endpoint cannot be bound (or a server already answers on it); 2 for a\n"
     "bad option.\n"},
    {"help", NULL, "show help for a command", "usage: psi help [COMMAND]\n"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int cmd_help_print(FILE *f, const char *cmd)
{
    const command *c;

    if (cmd) {
        if (!(c = find_command(cmd)))
            return -1;
        fputs(c->usage, f);
        return 0;
    }
    fputs("usage: psi COMMAND [ARGS...]\n"
          "       psi --version | --help\n"
          "\n"
          "Commands:\n", f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fputs("\nRun 'psi help COMMAND' or 'psi COMMAND --help' for a command's options.\n", f);
    return 0;
}

int cmd_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "psi%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cmd_help_print(stderr, cmd);
    return CMD_EXIT_USAGE;
}

int cmd_bad_option(const char *cmd, int opt, char **argv)
{
    const char *text = argv[optind - 1];

    /* A short option bundled as "-xh" leaves argv[optind - 1] ambiguous, so
     * name it by optopt when getopt recorded one. */
    if (optopt > 0 && optopt < 128 && strncmp(text, "--", 2) != 0)
        return cmd_usage_error(cmd, opt == ':' ? "option '-%c' needs a value"
                                               : "unknown option '-%c'", optopt);
    if (opt == ':')
        return cmd_usage_error(cmd, "option '%s' needs a value", text);
    return cmd_usage_error(cmd, "unknown option '%s'", text);
}

void cmd_human_bytes(uint64_t v, char *buf, size_t cap)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double d = (double)v;
    size_t u = 0;

    if (v < 1024) {
        snprintf(buf, cap, "%" PRIu64 " B", v);
        return;
    }
    d /= 1024;
    while (d >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        d /= 1024;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", d, units[u]);
}

static int cmd_help(int argc, char **argv)
{
    if (argc > 2)
        return cmd_usage_error("help", "too many arguments");
    if (argc == 2 && strcmp(argv[1], "--help") != 0 && strcmp(argv[1], "-h") != 0) {
        if (cmd_help_print(stdout, argv[1]) < 0)
            return cmd_usage_error(NULL, "unknown command '%s'", argv[1]);
        return 0;
    }
    cmd_help_print(stdout, argc == 2 ? "help" : NULL);
    return 0;
}

int main(int argc, char **argv)
{
    const command *c;

    if (argc < 2)
        return cmd_usage_error(NULL, "no command given");
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("psi %s\n", PSI_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cmd_help(1, argv);
    c = find_command(argv[1]);
    if (!c)
        return argv[1][0] == '-' ? cmd_usage_error(NULL, "unknown option '%s'", argv[1])
                                 : cmd_usage_error(NULL, "unknown command '%s'", argv[1]);
    return (c->fn ? c->fn : cmd_help)(argc - 1, argv + 1);
}

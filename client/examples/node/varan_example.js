#!/usr/bin/env node
// Varan from Node.js: list the peripheries, then run a command on them.
//
// Shows core's operator API over gRPC with @grpc/grpc-js, the .proto files
// loaded at run time by @grpc/proto-loader (no code generation): a unary call
// (varan.v1.Fleet/ListPeripheries) and a server-streaming one
// (varan.v1.Jobs/Exec), both authenticated with the metadata
// `authorization: Bearer <token>`, over TLS verified against core's cluster
// CA (core serves TLS by default). Exits 0 only if the job SUCCEEDED.
//
// Run (from client/examples/node; the google/protobuf/*.proto imports are
// read from /usr/include, Debian's libprotobuf-dev):
//
//   npm ci
//   node varan_example.js --core localhost:7700 \
//       --token-file ../../../.varan/core/admin.token \
//       --ca-file ../../../.varan/core/pki/ca.crt --selector env=test \
//       -- echo hello
//
// --core, --token-file and --ca-file default to $VARAN_CORE,
// $VARAN_TOKEN_FILE and $VARAN_CA_FILE; --proto-dir defaults to the
// repository's proto/ directory.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const {parseArgs} = require('node:util');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// Deadline of the unary call; Exec has none (a command may run for long) and
// ends when the job finishes.
const UNARY_TIMEOUT_MS = 10000;

function usage(message) {
  console.error(`error: ${message}
usage: varan_example.js [--core ADDR] [--token-file PATH]
                        [--ca-file PATH [--server-name NAME] |
                         --insecure-plaintext]
                        [--selector SEL] [--proto-dir DIR] [--] COMMAND...`);
  process.exit(2);
}

function parseCommandLine() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        'core': {type: 'string', default: process.env.VARAN_CORE || ''},
        'token-file':
            {type: 'string', default: process.env.VARAN_TOKEN_FILE || ''},
        // Core's CA certificate, <core data dir>/pki/ca.crt.
        'ca-file': {type: 'string', default: process.env.VARAN_CA_FILE || ''},
        // The name core's certificate must carry, when --core is an
        // address it was not made for (it always carries 'varan-core').
        'server-name': {type: 'string', default: ''},
        // No TLS, for a core started with --insecure-plaintext.
        'insecure-plaintext': {type: 'boolean', default: false},
        'selector': {type: 'string', default: ''},
        'proto-dir': {
          type: 'string',
          default: path.resolve(__dirname, '../../../proto'),
        },
      },
      allowPositionals: true,
    });
  } catch (e) {
    usage(e.message);
  }
  const {values, positionals} = parsed;
  if (!values.core || !values['token-file']) {
    usage('--core and --token-file (or $VARAN_CORE and $VARAN_TOKEN_FILE) ' +
          'are required');
  }
  if (!values['ca-file'] && !values['insecure-plaintext']) {
    usage('core serves TLS: pass --ca-file <core data dir>/pki/ca.crt ' +
          '(or $VARAN_CA_FILE), or --insecure-plaintext for a core started ' +
          'with --insecure-plaintext');
  }
  if (values['ca-file'] && values['insecure-plaintext']) {
    usage('--ca-file and --insecure-plaintext exclude each other');
  }
  if (positionals.length === 0) usage('no command given');
  return {...values, command: positionals.join(' ')};
}

// Channel credentials and options: TLS checked against --ca-file, or
// plaintext.
function channelSecurity(args) {
  if (args['insecure-plaintext']) {
    return {credentials: grpc.credentials.createInsecure(), options: {}};
  }
  const options = {};
  if (args['server-name']) {
    options['grpc.ssl_target_name_override'] = args['server-name'];
  }
  return {
    credentials: grpc.credentials.createSsl(fs.readFileSync(args['ca-file'])),
    options,
  };
}

function loadApi(protoDir) {
  const definition = protoLoader.loadSync('varan/v1/core.proto', {
    includeDirs: [protoDir, '/usr/include'],
    keepCase: true,   // field names as in the .proto files
    defaults: true,   // otherwise zero-valued fields are missing
    oneofs: true,     // event.event names the member of `oneof event` set
    enums: String,    // 'JOB_STATE_SUCCEEDED' rather than 2
    longs: String,
  });
  return grpc.loadPackageDefinition(definition).varan.v1;
}

function listPage(fleet, metadata, request) {
  return new Promise((resolve, reject) => {
    fleet.ListPeripheries(
        request, metadata, {deadline: Date.now() + UNARY_TIMEOUT_MS},
        (err, response) => err ? reject(err) : resolve(response));
  });
}

async function listPeripheries(fleet, metadata, selector) {
  const request = {target: {selector}, page_token: ''};
  const peripheries = [];
  do {  // a page at a time, until next_page_token is empty
    const response = await listPage(fleet, metadata, request);
    peripheries.push(...response.peripheries);
    request.page_token = response.next_page_token;
  } while (request.page_token);
  console.log(`${peripheries.length} peripheries:`);
  for (const p of peripheries) {
    const labels = Object.keys(p.labels)
                       .sort()
                       .map((k) => `${k}=${p.labels[k]}`)
                       .join(',');
    console.log(`  ${p.name}\t${p.state}\t${labels}`);
  }
}

// Streams the job's events; resolves to true if the job SUCCEEDED.
function execCommand(jobs, metadata, selector, command) {
  return new Promise((resolve, reject) => {
    let succeeded = false;
    const call = jobs.Exec(
        {target: {selector}, spec: {shell: command}}, metadata);
    call.on('data', (event) => {
      switch (event.event) {
        case 'accepted':
          console.log(`job ${event.job_id} on ${
              event.accepted.targets.join(', ')}`);
          break;
        case 'output': {
          const out = event.output.stream === 'OUTPUT_STREAM_STDERR' ?
              process.stderr :
              process.stdout;
          out.write(event.output.data);
          break;
        }
        case 'finished': {
          const f = event.finished;
          console.log(`${event.target}: ${f.state} (exit code ${
                          f.exit_status ? f.exit_status.code : '?'}) ${
                          f.error}`.trimEnd());
          break;
        }
        case 'job_finished':
          console.log(`job ${event.job_id}: ${event.job_finished.state}`);
          succeeded = event.job_finished.state === 'JOB_STATE_SUCCEEDED';
          break;
      }
    });
    call.on('error', reject);
    call.on('end', () => resolve(succeeded));
  });
}

async function main() {
  const args = parseCommandLine();
  const token = fs.readFileSync(args['token-file'], 'utf8').trim();
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);

  const api = loadApi(args['proto-dir']);
  const {credentials, options} = channelSecurity(args);
  const fleet = new api.Fleet(args.core, credentials, options);
  const jobs = new api.Jobs(args.core, credentials, options);
  try {
    await listPeripheries(fleet, metadata, args.selector);
    const ok = await execCommand(jobs, metadata, args.selector, args.command);
    return ok ? 0 : 1;
  } catch (err) {
    const code = grpc.status[err.code] || err.code;
    console.error(`error: ${code}: ${err.details || err.message}`);
    return 2;
  } finally {
    fleet.close();
    jobs.close();
  }
}

main().then((code) => {
  process.exitCode = code;
});

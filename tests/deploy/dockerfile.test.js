// deploy/docker/Dockerfile (no Docker engine here, so it is checked, not
// built): it lints clean with dockerfile-utils; its runtime stage installs
// exactly the Debian packages whose libraries the built binaries link; each
// image holds its binary where the Kubernetes manifests run it, as the user
// they expect.
'use strict';

const assert = require('node:assert/strict');
const {execFileSync} = require('child_process');
const fs = require('fs');
const path = require('path');
const {test} = require('node:test');
const dockerfileUtils = require('dockerfile-utils');
const {SOURCE_DIR, renderKustomization, find} = require('./k8s.js');

const DOCKERFILE = path.join(SOURCE_DIR, 'deploy/docker/Dockerfile');
const TEXT = fs.readFileSync(DOCKERFILE, 'utf8');
const BIN_DIR = process.env.VARAN_BIN_DIR;

// Instructions ({stage, op, args}) with continuation lines joined and
// comments dropped.
function instructions(text) {
  const out = [];
  let stage = null;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;  // also inside a continuation
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' ';
      continue;
    }
    const whole = (pending + line).trim();
    pending = '';
    if (whole === '') continue;
    const [op, ...rest] = whole.split(/\s+/);
    const args = rest.join(' ');
    if (op.toUpperCase() === 'FROM') {
      const as = /\sAS\s+(\S+)$/i.exec(whole);
      stage = as ? as[1] : null;
    }
    out.push({stage, op: op.toUpperCase(), args});
  }
  return out;
}

const STEPS = instructions(TEXT);

function stageSteps(stage, op) {
  return STEPS.filter((s) => s.stage === stage && s.op === op);
}

// The packages `apt-get install` installs in `stage`.
function aptPackages(stage) {
  const packages = [];
  for (const run of stageSteps(stage, 'RUN')) {
    for (const command of run.args.split('&&')) {
      const words = command.trim().split(/\s+/);
      const i = words.indexOf('install');
      if (!words.includes('apt-get') || i < 0) continue;
      packages.push(...words.slice(i + 1).filter((w) => !w.startsWith('-')));
    }
  }
  return packages;
}

// The Debian package that ships `file`.
function debianPackage(file) {
  const candidates = [file, fs.realpathSync(file),
                      file.replace(/^\/lib\//, '/usr/lib/'),
                      file.replace(/^\/usr\/lib\//, '/lib/')];
  for (const candidate of candidates) {
    try {
      const out = execFileSync('dpkg-query', ['-S', candidate],
                               {encoding: 'utf8', stdio: 'pipe'});
      return out.split(':')[0];
    } catch (e) {
      // not this path
    }
  }
  throw new Error(`no Debian package ships ${file}`);
}

// The sanitizer runtimes a build with VARAN_SANITIZE links on top of what
// a release build links (make asan-test). The image ships release binaries,
// so the check judges what those link: these are set aside, nothing else.
const SANITIZER_RUNTIME = /^lib(asan|ubsan|tsan|lsan)\.so(\.|$)/;
const SANITIZED = (process.env.VARAN_SANITIZE || '') !== '';

// The packages of the libraries `binary` links directly (DT_NEEDED), as a
// release build links them; apt brings in their own dependencies.
function linkedPackages(binary) {
  const needed = execFileSync('objdump', ['-p', binary], {encoding: 'utf8'})
                     .split('\n')
                     .map((l) => /^\s*NEEDED\s+(\S+)/.exec(l))
                     .filter((m) => m)
                     .map((m) => m[1])
                     .filter((lib) => !SANITIZED ||
                                      !SANITIZER_RUNTIME.test(lib));
  const resolved = new Map();
  for (const line of execFileSync('ldd', [binary], {encoding: 'utf8'})
           .split('\n')) {
    const m = /^\s*(\S+) => (\/\S+)/.exec(line);
    if (m) resolved.set(m[1], m[2]);
  }
  return needed.map((lib) => {
    assert.ok(resolved.has(lib), `ldd resolves ${lib} of ${binary}`);
    return debianPackage(resolved.get(lib));
  });
}

test('the Dockerfile lints clean', () => {
  assert.deepEqual(dockerfileUtils.validate(TEXT), []);
  // And the linter does look: a broken copy of it is reported.
  const broken = TEXT.replace('COPY --from=build', 'COPY --frum=build');
  assert.ok(dockerfileUtils.validate(broken).length > 0);
});

test('stages: a bookworm build, a slim runtime, core, periphery, varanctl',
     () => {
       const froms = STEPS.filter((s) => s.op === 'FROM').map((s) => s.args);
       assert.deepEqual(froms, [
         'debian:${DEBIAN_RELEASE} AS build',
         'debian:${DEBIAN_RELEASE}-slim AS runtime',
         'runtime AS core',
         'runtime AS periphery',
         'runtime AS varanctl',
       ]);
       assert.ok(STEPS.some((s) => s.op === 'ARG' &&
                                   s.args === 'DEBIAN_RELEASE=bookworm'));
       assert.ok(!STEPS.some((s) => s.op === 'HEALTHCHECK'));
     });

test('the runtime stage installs exactly the libraries the binaries link',
     () => {
       assert.ok(BIN_DIR, 'VARAN_BIN_DIR is set');
       // In every Debian image, slim included (apt itself needs them).
       const base = new Set(['libc6', 'libgcc-s1', 'libstdc++6']);
       const needed = new Set();
       for (const binary of ['varan-core', 'varan-periphery', 'varanctl']) {
         for (const p of linkedPackages(path.join(BIN_DIR, binary))) {
           if (!base.has(p)) needed.add(p);
         }
       }
       const installed = aptPackages('runtime').filter(
           (p) => p !== 'ca-certificates');
       const missing = [...needed].filter((p) => !installed.includes(p));
       const unused = installed.filter((p) => !needed.has(p));
       assert.deepEqual(
           {missing, unused}, {missing: [], unused: []},
           'the apt-get install of the runtime stage in ' +
               'deploy/docker/Dockerfile must list exactly the packages of ' +
               'the libraries the binaries link (missing: add them; unused: ' +
               'drop them)');
     });

test('each image holds its binary where the manifests run it', () => {
  const objects = renderKustomization('base');
  const commands = {
    core: find(objects, 'StatefulSet', 'varan-core')
              .spec.template.spec.containers[0].command,
    periphery: find(objects, 'DaemonSet', 'varan-periphery')
                   .spec.template.spec.containers[0].command,
  };
  for (const [stage, command] of Object.entries(commands)) {
    const binary = command[0];
    const copies = stageSteps(stage, 'COPY').map((s) => s.args);
    assert.ok(copies.some((c) => c.startsWith('--from=build ') &&
                                 c.endsWith(` ${binary}`)),
              `the ${stage} image has ${binary}`);
    assert.deepEqual(stageSteps(stage, 'ENTRYPOINT').map((s) => s.args),
                     [JSON.stringify([binary]).replace(/,/g, ', ')]);
  }
});

test('core and varanctl run as the user the manifests expect', () => {
  const objects = renderKustomization('base');
  const sts = find(objects, 'StatefulSet', 'varan-core');
  const sc = sts.spec.template.spec.securityContext;
  const user = `${sc.runAsUser}:${sc.runAsGroup}`;
  assert.deepEqual(stageSteps('core', 'USER').map((s) => s.args), [user]);
  assert.deepEqual(stageSteps('varanctl', 'USER').map((s) => s.args), [user]);
  const runtime = stageSteps('runtime', 'RUN').map((s) => s.args).join(' ');
  assert.match(runtime, new RegExp(`useradd .*--uid ${sc.runAsUser} `));
});

test('.dockerignore keeps build output and secrets out of the context', () => {
  const ignore = fs.readFileSync(path.join(SOURCE_DIR, '.dockerignore'),
                                 'utf8')
                     .split('\n')
                     .filter((l) => l && !l.startsWith('#'));
  for (const p of ['.git', 'build', 'build-*', '.varan', '**/node_modules',
                   '**/*.token']) {
    assert.ok(ignore.includes(p), p);
  }
  // Nothing the build stage compiles is excluded.
  for (const p of ignore) {
    assert.ok(!/^(cmake|common|core|periphery|client|proto|deploy)\b/.test(p),
              p);
  }
});

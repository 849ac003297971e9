// The Kubernetes manifests (deploy/kubernetes/): the base and every overlay,
// rendered, validate against the Kubernetes schemas (kubernetes-models,
// offline) and hold together: probes, Service, NetworkPolicy and
// PodDisruptionBudget point at the ports and pods that exist, and each
// overlay changes what it promises. Which flags the containers run with is
// proven by the smoke test (tests/integration/deploy_test.cc), which starts
// the real binaries with them (the ha overlay's core, which needs a
// PostgreSQL database, is not among them yet).
'use strict';

const assert = require('node:assert/strict');
const {test} = require('node:test');
const fs = require('fs');
const path = require('path');
const {SOURCE_DIR, KUSTOMIZATIONS, allKustomizations, renderKustomization,
       find, validate, projectVersion} = require('./k8s.js');

const rendered = Object.fromEntries(
    KUSTOMIZATIONS.map((k) => [k, renderKustomization(k)]));

// The overlay whose core is several replicas on PostgreSQL (a Deployment);
// everywhere else core is one StatefulSet replica on SQLite.
const HA = 'overlays/ha';

function podSpec(objects, kind, name) {
  return find(objects, kind, name).spec.template.spec;
}

// Core's workload: the StatefulSet of the base and the overlays on it, the
// Deployment of ha; exactly one of them.
function coreWorkload(objects) {
  const found = objects.filter(
      (o) => (o.kind === 'StatefulSet' || o.kind === 'Deployment') &&
             o.metadata.name === 'varan-core');
  assert.equal(found.length, 1, 'one core workload');
  return found[0];
}

function corePodSpec(objects) {
  return coreWorkload(objects).spec.template.spec;
}

// Every object that runs pods.
function workloads(objects) {
  return objects.filter((o) => o.spec && o.spec.template &&
                               o.spec.template.spec);
}

function container(spec, name) {
  const found = spec.containers.filter((c) => c.name === name);
  assert.equal(found.length, 1, `one container ${name}`);
  return found[0];
}

function matches(selector, labels) {
  return Object.entries(selector.matchLabels || {}).every(
      ([k, v]) => labels[k] === v);
}

for (const k of KUSTOMIZATIONS) {
  test(`${k}: every object validates against the Kubernetes schemas`, () => {
    const objects = rendered[k];
    assert.ok(objects.length >= 10, `${objects.length} objects`);
    for (const obj of objects) {
      assert.deepEqual(validate(obj), [],
                       `${obj.kind} ${obj.metadata.name} in ${k}`);
    }
  });

  test(`${k}: everything is in the varan namespace, Namespace first`, () => {
    const objects = rendered[k];
    assert.equal(objects[0].kind, 'Namespace');
    assert.equal(objects[0].metadata.name, 'varan');
    // hostPath volumes (the peripheries' state) need the privileged level.
    assert.equal(
        objects[0].metadata.labels['pod-security.kubernetes.io/enforce'],
        'privileged');
    for (const obj of objects.slice(1)) {
      assert.equal(obj.metadata.namespace, 'varan',
                   `${obj.kind} ${obj.metadata.name}`);
    }
  });

  if (k !== HA) {
    test(`${k}: core is one StatefulSet replica on a volume claim`, () => {
      const sts = find(rendered[k], 'StatefulSet', 'varan-core');
      assert.equal(sts.spec.replicas, 1);
      assert.equal(sts.spec.serviceName, 'varan-core');
      const claims = sts.spec.volumeClaimTemplates.map(
          (c) => c.metadata.name);
      const core = container(sts.spec.template.spec, 'core');
      const mounted = core.volumeMounts.map((m) => m.name);
      assert.ok(claims.every((c) => mounted.includes(c)),
                'claims are mounted');
    });
  }

  test(`${k}: core's configuration is the ConfigMap, as a TOML file`, () => {
    const spec = corePodSpec(rendered[k]);
    const core = container(spec, 'core');
    const config = find(rendered[k], 'ConfigMap', 'varan-core');
    const volume = spec.volumes.find(
        (v) => v.configMap && v.configMap.name === 'varan-core');
    assert.ok(volume, 'the ConfigMap is a volume');
    const mount = core.volumeMounts.find((m) => m.name === volume.name);
    assert.ok(core.args.includes(`--config=${mount.mountPath}/core.toml`));
    assert.match(config.data['core.toml'], /^data-dir = "/m);
  });

  test(`${k}: core takes the join and admin tokens from Secrets`, () => {
    const spec = corePodSpec(rendered[k]);
    const core = container(spec, 'core');
    for (const [flag, secret] of [['--join-token-file', 'varan-join-token'],
                                  ['--admin-token-file',
                                   'varan-admin-token']]) {
      const arg = core.args.find((a) => a.startsWith(`${flag}=`));
      assert.ok(arg, flag);
      const file = arg.slice(flag.length + 1);
      const mount = core.volumeMounts.find(
          (m) => file === `${m.mountPath}/token`);
      assert.ok(mount && mount.readOnly, `${file} is on a read-only mount`);
      const volume = spec.volumes.find((v) => v.name === mount.name);
      assert.equal(volume.secret.secretName, secret);
    }
    // The peripheries' join token is the same Secret.
    const ds = podSpec(rendered[k], 'DaemonSet', 'varan-periphery');
    assert.ok(ds.volumes.some(
        (v) => v.secret && v.secret.secretName === 'varan-join-token'));
  });

  test(`${k}: core may take a CA made ahead of time from Secret varan-ca`,
       () => {
         const spec = corePodSpec(rendered[k]);
         const core = container(spec, 'core');
         const arg = core.args.find((a) => a.startsWith('--ca-from='));
         assert.ok(arg, '--ca-from');
         const dir = arg.slice('--ca-from='.length);
         const mount = core.volumeMounts.find((m) => m.mountPath === dir);
         assert.ok(mount && mount.readOnly, `${dir} is a read-only mount`);
         const volume = spec.volumes.find((v) => v.name === mount.name);
         assert.equal(volume.secret.secretName, 'varan-ca');
         // Without the Secret, core makes its own CA as before.
         assert.equal(volume.secret.optional, true);
         assert.ok((volume.secret.defaultMode & 0o007) === 0,
                   'the CA key is not readable by others');
       });

  test(`${k}: probes are native gRPC health checks on the health port`,
       () => {
         const spec = corePodSpec(rendered[k]);
         const core = container(spec, 'core');
         // Kubelet's gRPC probes speak no TLS: they check the port core
         // serves health alone on in plaintext (health-listen), not core's
         // own port, which serves TLS only.
         const healthPort =
             core.ports.find((p) => p.name === 'health').containerPort;
         const grpcPort =
             core.ports.find((p) => p.name === 'grpc').containerPort;
         assert.notEqual(healthPort, grpcPort);
         const toml = find(rendered[k], 'ConfigMap', 'varan-core')
                          .data['core.toml'];
         assert.match(toml,
                      new RegExp(`^health-listen = \\["\\[::\\]:${
                                     healthPort}"\\]$`, 'm'));
         for (const probe of ['startupProbe', 'livenessProbe',
                              'readinessProbe']) {
           assert.ok(core[probe], `core has a ${probe}`);
           assert.equal(core[probe].grpc.port, healthPort, probe);
         }
         // Startup and liveness check the server's overall health, so an
         // unreachable database never restarts core. Readiness does too on
         // SQLite; with a database it asks the service "ready", NOT_SERVING
         // while the database is unreachable.
         for (const probe of ['startupProbe', 'livenessProbe']) {
           assert.deepEqual(core[probe].grpc, {port: healthPort}, probe);
         }
         assert.deepEqual(core.readinessProbe.grpc,
                          k === HA ? {port: healthPort, service: 'ready'}
                                   : {port: healthPort});
       });

  test(`${k}: nothing runs plaintext; peripheries wait for core's pin`, () => {
    const objects = rendered[k];
    const toml = find(objects, 'ConfigMap', 'varan-core').data['core.toml'];
    assert.doesNotMatch(toml, /^\s*insecure-plaintext/m);
    assert.doesNotMatch(toml, /^\s*tls-(cert|key)\s*=/m,
                        'the built-in CA, not certificates of your own');
    for (const w of workloads(objects)) {
      const spec = w.spec.template.spec;
      for (const c of [...spec.containers, ...(spec.initContainers || [])]) {
        assert.ok(!(c.args || []).some((a) => a.includes('insecure')),
                  `${w.metadata.name}/${c.name}`);
        assert.ok(!(c.env || []).some((e) => e.name.includes('INSECURE')),
                  `${w.metadata.name}/${c.name}`);
      }
    }
    // The periphery's pod waits for the join token to carry the pin (or
    // for a pin it kept), reading the very files the periphery reads.
    const ds = podSpec(objects, 'DaemonSet', 'varan-periphery');
    const p = container(ds, 'periphery');
    const wait = ds.initContainers.find((c) => c.name === 'core-pin');
    const script = wait.command.join(' ');
    const token = p.args.find((a) => a.startsWith('--join-token-file='))
                      .split('=')[1];
    const state = p.args.find((a) => a.startsWith('--state-dir='))
                      .split('=')[1];
    assert.ok(script.includes(`grep -q '[.]sha256:' ${token}`), script);
    assert.ok(script.includes(`-s ${state}/core-ca.pin`), script);
    for (const file of [token, state]) {
      assert.ok(wait.volumeMounts.some(
                    (m) => file.startsWith(m.mountPath) && m.readOnly),
                file);
    }
  });

  test(`${k}: the Service and NetworkPolicy lead to core's port`, () => {
    const objects = rendered[k];
    const spec = corePodSpec(objects);
    const labels = coreWorkload(objects).spec.template.metadata.labels;
    const service = find(objects, 'Service', 'varan-core');
    assert.ok(Object.entries(service.spec.selector).every(
        ([key, v]) => labels[key] === v), 'the Service selects core');
    assert.equal(service.spec.ports.length, 1);
    const port = container(spec, 'core').ports.find(
        (p) => p.name === service.spec.ports[0].targetPort);
    assert.ok(port, 'the Service targets a named core port');

    const policy = find(objects, 'NetworkPolicy', 'varan-core');
    assert.ok(matches(policy.spec.podSelector, labels));
    assert.deepEqual(policy.spec.policyTypes, ['Ingress']);
    const rule = policy.spec.ingress[0];
    assert.deepEqual(rule.ports.map((p) => p.port), [port.name]);
    // Peripheries may connect; so may labelled clients; nobody else.
    const peripheryLabels = find(objects, 'DaemonSet', 'varan-periphery')
                                .spec.template.metadata.labels;
    assert.ok(rule.from.some((peer) => peer.podSelector &&
                                       !peer.namespaceSelector &&
                                       matches(peer.podSelector,
                                               peripheryLabels)));
    assert.ok(rule.from.every((peer) => peer.podSelector &&
                                        !peer.ipBlock &&
                                        Object.keys(
                                            peer.podSelector.matchLabels)
                                            .length > 0));
  });

  test(`${k}: a PodDisruptionBudget covers core, and only core`, () => {
    const objects = rendered[k];
    const pdb = find(objects, 'PodDisruptionBudget', 'varan-core');
    const core = coreWorkload(objects);
    assert.ok(matches(pdb.spec.selector, core.spec.template.metadata.labels));
    for (const w of workloads(objects).filter((o) => o !== core)) {
      assert.ok(!matches(pdb.spec.selector, w.spec.template.metadata.labels),
                `not ${w.kind} ${w.metadata.name}`);
    }
    assert.equal(pdb.spec.unhealthyPodEvictionPolicy, 'AlwaysAllow');
    if (k !== HA) {
      // One replica: a drain waits until an operator moves it.
      assert.equal(pdb.spec.minAvailable, 1);
      assert.equal(pdb.spec.maxUnavailable, undefined);
    }
  });

  test(`${k}: core runs non-root, read-only, without capabilities`, () => {
    const spec = corePodSpec(rendered[k]);
    assert.equal(spec.securityContext.runAsNonRoot, true);
    assert.ok(spec.securityContext.runAsUser > 0);
    assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.equal(spec.automountServiceAccountToken, false);
    const sc = container(spec, 'core').securityContext;
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
  });

  test(`${k}: every container has requests and limits`, () => {
    const all = workloads(rendered[k]);
    assert.ok(all.length >= 2);
    for (const w of all) {
      const spec = w.spec.template.spec;
      const name = w.metadata.name;
      for (const c of [...spec.containers, ...(spec.initContainers || [])]) {
        for (const what of ['requests', 'limits']) {
          assert.ok(c.resources[what].cpu, `${name} ${what}.cpu`);
          assert.ok(c.resources[what].memory, `${name} ${what}.memory`);
        }
      }
    }
  });

  test(`${k}: images are tagged with the project version`, () => {
    const version = projectVersion();
    assert.equal(container(corePodSpec(rendered[k]), 'core').image,
                 `varan/core:${version}`);
    assert.equal(
        container(podSpec(rendered[k], 'DaemonSet', 'varan-periphery'),
                  'periphery').image, `varan/periphery:${version}`);
  });

  test(`${k}: a periphery per node, named after it, token from a Secret`,
       () => {
         const objects = rendered[k];
         const spec = podSpec(objects, 'DaemonSet', 'varan-periphery');
         assert.deepEqual(spec.tolerations, [{operator: 'Exists'}]);
         const p = container(spec, 'periphery');
         const name = p.env.find((e) => e.name === 'VARAN_NAME');
         assert.deepEqual(name.valueFrom,
                          {fieldRef: {fieldPath: 'spec.nodeName'}});
         const tokenArg = p.args.find(
             (a) => a.startsWith('--join-token-file='));
         const tokenFile = tokenArg.split('=')[1];
         const mount = p.volumeMounts.find(
             (m) => tokenFile.startsWith(m.mountPath + '/'));
         const volume = spec.volumes.find((v) => v.name === mount.name);
         assert.equal(volume.secret.secretName, 'varan-join-token');
         assert.equal(tokenFile, `${mount.mountPath}/token`);
         // Its credential stays on the node, in a directory the init
         // container hands to the periphery's user (as root with only
         // CHOWN and FOWNER).
         const stateArg = p.args.find((a) => a.startsWith('--state-dir='));
         const stateMount = p.volumeMounts.find(
             (m) => m.mountPath === stateArg.split('=')[1]);
         const state = spec.volumes.find((v) => v.name === stateMount.name);
         assert.deepEqual(state.hostPath, {path: '/var/lib/varan/periphery',
                                           type: 'DirectoryOrCreate'});
         assert.deepEqual(spec.volumes.filter((v) => v.hostPath), [state]);
         assert.deepEqual(spec.initContainers.map((c) => c.name),
                          ['state-dir', 'core-pin']);
         const init = spec.initContainers[0];
         assert.deepEqual(init.command,
                          ['install', '-d', '-o', '10001', '-g', '10001',
                           '-m', '0700', stateMount.mountPath]);
         assert.deepEqual(init.securityContext.capabilities,
                          {drop: ['ALL'], add: ['CHOWN', 'FOWNER']});
         assert.equal(init.securityContext.allowPrivilegeEscalation, false);
         // It reaches core through the Service's DNS name and port.
         const service = find(objects, 'Service', 'varan-core');
         assert.ok(p.args.includes(
             `--core=varan-core.varan.svc:${service.spec.ports[0].port}`));
       });

  test(`${k}: peripheries use a tunnel and accept no connections`, () => {
    const objects = rendered[k];
    const spec = podSpec(objects, 'DaemonSet', 'varan-periphery');
    const p = container(spec, 'periphery');
    assert.ok(p.args.includes('--tunnel'));
    assert.ok(p.args.includes('--no-listen'));
    assert.ok(!p.args.some((a) => a.startsWith('--listen')));
    assert.equal(p.ports, undefined);
    const policy = find(objects, 'NetworkPolicy', 'varan-periphery');
    assert.ok(matches(policy.spec.podSelector,
                      spec.containers && find(objects, 'DaemonSet',
                                              'varan-periphery')
                                             .spec.template.metadata.labels));
    assert.deepEqual(policy.spec.policyTypes, ['Ingress']);
    assert.equal(policy.spec.ingress, undefined, 'no ingress rule');
  });
}

test('base and dual-stack: the core Service prefers dual-stack', () => {
  for (const k of ['base', 'overlays/dual-stack']) {
    const service = find(rendered[k], 'Service', 'varan-core');
    assert.equal(service.spec.ipFamilyPolicy, 'PreferDualStack', k);
    assert.equal(service.spec.ipFamilies, undefined, k);
  }
  assert.deepEqual(rendered['overlays/dual-stack'], rendered.base);
});

test('ipv6-only: the core Service is single-stack IPv6, nothing else differs',
     () => {
       const objects = rendered['overlays/ipv6-only'];
       const service = find(objects, 'Service', 'varan-core');
       assert.equal(service.spec.ipFamilyPolicy, 'SingleStack');
       assert.deepEqual(service.spec.ipFamilies, ['IPv6']);
       const others = (list) => list.filter((o) => o.kind !== 'Service');
       assert.deepEqual(others(objects), others(rendered.base));
     });

test('base: the periphery is sandboxed: non-root, read-only, no capabilities',
     () => {
       const spec = podSpec(rendered.base, 'DaemonSet', 'varan-periphery');
       assert.equal(spec.hostPID, undefined);
       assert.equal(spec.hostNetwork, undefined);
       assert.equal(spec.securityContext.runAsNonRoot, true);
       const sc = container(spec, 'periphery').securityContext;
       assert.equal(sc.readOnlyRootFilesystem, true);
       assert.equal(sc.allowPrivilegeEscalation, false);
       assert.deepEqual(sc.capabilities.drop, ['ALL']);
       assert.equal(spec.securityContext.runAsUser, 10001);
     });

test('host: the periphery shares the node\'s PIDs, privileged, state on the ' +
         'node',
     () => {
       const objects = rendered['overlays/host'];
       const spec = podSpec(objects, 'DaemonSet', 'varan-periphery');
       assert.equal(spec.hostPID, true);
       const p = container(spec, 'periphery');
       assert.equal(p.securityContext.privileged, true);
       assert.equal(spec.securityContext.runAsUser, 0);
       assert.ok(p.args.includes('--label=mode=host'));
       assert.ok(!p.args.includes('--label=mode=pod'));
       const stateArg = p.args.find((a) => a.startsWith('--state-dir='));
       const mount = p.volumeMounts.find(
           (m) => m.mountPath === stateArg.split('=')[1]);
       const volume = spec.volumes.find((v) => v.name === mount.name);
       assert.deepEqual(volume.hostPath, {path: '/var/lib/varan/periphery',
                                          type: 'DirectoryOrCreate'});
       // Core is unchanged.
       assert.deepEqual(find(objects, 'StatefulSet', 'varan-core'),
                        find(rendered.base, 'StatefulSet', 'varan-core'));
     });

test('every overlay under deploy/kubernetes/overlays is tested', () => {
  const overlays = allKustomizations().filter(
      (k) => /^overlays\/[^/]+$/.test(k));
  assert.ok(overlays.includes(HA));
  for (const k of overlays) assert.ok(KUSTOMIZATIONS.includes(k), k);
});

// --- overlays/ha: several core replicas on PostgreSQL (#19) ---------------

const ha = rendered[HA];
const haPostgres = renderKustomization(`${HA}/postgres`);

// The mount of `spec`'s container `c` that holds `file`, and its volume.
function volumeOf(spec, c, file) {
  const mount = c.volumeMounts.find(
      (m) => file.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `${file} is on a mount`);
  const volume = spec.volumes.find((v) => v.name === mount.name);
  assert.ok(volume, `volume ${mount.name}`);
  return {mount, volume, key: file.slice(mount.mountPath.length + 1)};
}

// The file a Secret volume shows for the Secret's key `key`.
function secretFile(volume, key) {
  if (!volume.secret.items) return key;
  const item = volume.secret.items.find((i) => i.key === key);
  return item ? item.path : undefined;
}

function flagValue(args, flag) {
  const found = args.filter((a) => a.startsWith(`${flag}=`));
  assert.ok(found.length <= 1, `${flag} given once`);
  return found.length ? found[0].slice(flag.length + 1) : undefined;
}

test('ha: core is a Deployment of three replicas, spread over nodes', () => {
  const deployment = find(ha, 'Deployment', 'varan-core');
  assert.equal(coreWorkload(ha), deployment, 'and no core StatefulSet');
  assert.equal(deployment.spec.replicas, 3);
  const labels = deployment.spec.template.metadata.labels;
  assert.ok(matches(deployment.spec.selector, labels));
  // A rollout never takes a replica away before its successor is ready.
  assert.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
  assert.ok(deployment.spec.strategy.rollingUpdate.maxSurge >= 1);
  // Spread over nodes, as a preference (a small cluster still runs all).
  const spec = deployment.spec.template.spec;
  const spread = (spec.topologySpreadConstraints || []).filter(
      (t) => t.topologyKey === 'kubernetes.io/hostname');
  const anti = ((spec.affinity || {}).podAntiAffinity || {})
                   .preferredDuringSchedulingIgnoredDuringExecution || [];
  assert.ok(spread.some((t) => t.whenUnsatisfiable === 'ScheduleAnyway' &&
                               matches(t.labelSelector, labels)) ||
                anti.some((a) => a.podAffinityTerm.topologyKey ===
                                     'kubernetes.io/hostname' &&
                                 matches(a.podAffinityTerm.labelSelector,
                                         labels)),
            'replicas prefer different nodes');
  assert.equal((spec.affinity || {}).podAntiAffinity &&
                   spec.affinity.podAntiAffinity
                       .requiredDuringSchedulingIgnoredDuringExecution,
               undefined, 'a preference, not a rule');
  assert.ok((spec.topologySpreadConstraints || []).every(
                (t) => t.whenUnsatisfiable === 'ScheduleAnyway'),
            'a preference, not a rule');
});

test('ha: a PodDisruptionBudget keeps all replicas but one', () => {
  const pdb = find(ha, 'PodDisruptionBudget', 'varan-core');
  const replicas = find(ha, 'Deployment', 'varan-core').spec.replicas;
  const {minAvailable, maxUnavailable} = pdb.spec;
  assert.ok(
      (maxUnavailable === 1 && minAvailable === undefined) ||
          (maxUnavailable === undefined && minAvailable === replicas - 1),
      JSON.stringify(pdb.spec));
});

test('ha: core\'s data directory is an emptyDir, nothing of its own is kept',
     () => {
       const spec = corePodSpec(ha);
       const core = container(spec, 'core');
       const config = find(ha, 'ConfigMap', 'varan-core').data['core.toml'];
       const dataDir = /^data-dir = "([^"]+)"/m.exec(config)[1];
       assert.ok(!core.args.some((a) => a.startsWith('--data-dir')));
       const {volume} = volumeOf(spec, core, `${dataDir}/admin.token`);
       assert.ok(volume.emptyDir, 'the data directory is on an emptyDir');
       assert.equal(find(ha, 'Deployment', 'varan-core').spec
                        .volumeClaimTemplates, undefined);
       assert.ok(spec.volumes.every((v) => !v.persistentVolumeClaim &&
                                           !v.hostPath));
     });

test('ha: the database URL comes from the Secret varan-database only', () => {
  const spec = corePodSpec(ha);
  const core = container(spec, 'core');
  // Core reads it from the mounted Secret (key "url"), read-only.
  const file = flagValue(core.args, '--database-file');
  assert.ok(file, '--database-file');
  const {mount, volume, key} = volumeOf(spec, core, file);
  assert.equal(mount.readOnly, true);
  assert.equal(volume.secret.secretName, 'varan-database');
  assert.equal(secretFile(volume, 'url'), key);
  // Never literally: not as --database, not in an env value (VARAN_DATABASE
  // or any other), not in the ConfigMap, nowhere in what is deployed.
  assert.equal(flagValue(core.args, '--database'), undefined);
  assert.ok(!core.args.includes('--database'));
  assert.equal(core.command.length, 1);
  for (const e of core.env || []) {
    assert.ok(!/^VARAN_DATABASE/.test(e.name), e.name);
  }
  assert.doesNotMatch(find(ha, 'ConfigMap', 'varan-core').data['core.toml'],
                      /^database/m);
  for (const obj of ha) {
    assert.doesNotMatch(JSON.stringify(obj), /postgres(ql)?:\/\//,
                        `${obj.kind} ${obj.metadata.name}`);
  }
});

test('ha: each replica announces its pod IP (downward API)', () => {
  const core = container(corePodSpec(ha), 'core');
  assert.equal(flagValue(core.args, '--replica-address'), '$(POD_IP)');
  const podIp = core.env.filter((e) => e.name === 'POD_IP');
  assert.deepEqual(
      podIp,
      [{name: 'POD_IP', valueFrom: {fieldRef: {fieldPath: 'status.podIP'}}}]);
  // The other replicas may connect to it, on core's port.
  const labels = coreWorkload(ha).spec.template.metadata.labels;
  const rule = find(ha, 'NetworkPolicy', 'varan-core').spec.ingress[0];
  assert.ok(rule.from.some((peer) => !peer.namespaceSelector &&
                                     matches(peer.podSelector, labels)));
  assert.deepEqual(rule.ports.map((p) => p.port), ['grpc']);
  // Elsewhere the NetworkPolicy is the base's but for that peer.
  const base = find(rendered.base, 'NetworkPolicy', 'varan-core');
  const without = structuredClone(find(ha, 'NetworkPolicy', 'varan-core'));
  without.spec.ingress[0].from = without.spec.ingress[0].from.filter(
      (peer) => !matches(peer.podSelector, labels));
  assert.deepEqual(without, base);
});

test('ha: peripheries and everything else are the base\'s', () => {
  const postgres = new Set(
      haPostgres.map((o) => `${o.kind}/${o.metadata.name}`));
  const differs = new Set(['Deployment/varan-core', 'StatefulSet/varan-core',
                           'PodDisruptionBudget/varan-core',
                           'NetworkPolicy/varan-core']);
  const same = (list) => list.filter(
      (o) => !differs.has(`${o.kind}/${o.metadata.name}`) &&
             !postgres.has(`${o.kind}/${o.metadata.name}`));
  assert.deepEqual(same(ha), same(rendered.base));
});

test('ha: PostgreSQL 15 to try it, in postgres/, which can be left out', () => {
  // postgres/ is a kustomization of its own, listed in the overlay's
  // resources; the overlay is the rest plus exactly its objects.
  const kustomization = fs.readFileSync(
      path.join(SOURCE_DIR, 'deploy/kubernetes', HA, 'kustomization.yaml'),
      'utf8');
  assert.match(kustomization, /^ {2}- postgres$/m);
  const ids = (list) => list.map((o) => `${o.kind}/${o.metadata.name}`);
  const postgres = new Set(ids(haPostgres));
  assert.deepEqual(
      ha.filter((o) => postgres.has(`${o.kind}/${o.metadata.name}`)),
      haPostgres.filter((o) => o.kind !== 'Namespace'));
  // Nothing else names it: without postgres/ core finds its database only
  // through the Secret varan-database.
  for (const obj of ha.filter(
           (o) => !postgres.has(`${o.kind}/${o.metadata.name}`))) {
    assert.doesNotMatch(JSON.stringify(obj), /postgres/,
                        `${obj.kind} ${obj.metadata.name}`);
  }
  for (const obj of haPostgres) {
    assert.deepEqual(validate(obj), [], `${obj.kind} ${obj.metadata.name}`);
    assert.equal(obj.metadata.namespace, 'varan');
  }
});

test('ha: PostgreSQL runs as a StatefulSet on a volume claim, its password ' +
         'from a Secret, reachable by core only',
     () => {
       const sts = find(ha, 'StatefulSet', 'varan-postgres');
       assert.equal(sts.spec.replicas, 1);
       const spec = sts.spec.template.spec;
       const pg = container(spec, 'postgres');
       assert.equal(pg.image, 'postgres:15');
       const env = Object.fromEntries(
           pg.env.map((e) => [e.name, e.value === undefined ? e : e.value]));
       // The database lives below the claim's mount (not the mount itself,
       // which may hold lost+found).
       const claim = sts.spec.volumeClaimTemplates[0];
       const dataMount = pg.volumeMounts.find(
           (m) => m.name === claim.metadata.name);
       assert.ok(env.PGDATA.startsWith(`${dataMount.mountPath}/`),
                 env.PGDATA);
       assert.ok(claim.spec.resources.requests.storage);
       // The password: a file from the Secret varan-postgres, never a value.
       assert.equal(env.POSTGRES_PASSWORD, undefined);
       const {mount, volume, key} = volumeOf(spec, pg,
                                             env.POSTGRES_PASSWORD_FILE);
       assert.equal(mount.readOnly, true);
       assert.equal(volume.secret.secretName, 'varan-postgres');
       assert.equal(secretFile(volume, 'password'), key);
       assert.equal(env.POSTGRES_USER, 'varan');
       assert.equal(env.POSTGRES_DB, 'varan');
       // Non-root, read-only root filesystem, no capabilities, and every
       // probe on the server's port.
       assert.equal(spec.securityContext.runAsNonRoot, true);
       assert.ok(spec.securityContext.runAsUser > 0);
       assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault');
       assert.equal(spec.automountServiceAccountToken, false);
       assert.equal(pg.securityContext.readOnlyRootFilesystem, true);
       assert.equal(pg.securityContext.allowPrivilegeEscalation, false);
       assert.deepEqual(pg.securityContext.capabilities.drop, ['ALL']);
       const port = pg.ports.find((p) => p.name === 'postgres');
       assert.equal(port.containerPort, 5432);
       for (const probe of ['startupProbe', 'livenessProbe',
                            'readinessProbe']) {
         const cmd = pg[probe].exec.command;
         assert.equal(cmd[0], 'pg_isready', probe);
         assert.equal(cmd[cmd.indexOf('-p') + 1], String(port.containerPort));
       }
       // The headless Service varan-postgres leads to that port.
       const service = find(ha, 'Service', 'varan-postgres');
       assert.equal(sts.spec.serviceName, service.metadata.name);
       assert.equal(service.spec.clusterIP, 'None');
       const labels = sts.spec.template.metadata.labels;
       assert.ok(matches({matchLabels: service.spec.selector}, labels));
       assert.deepEqual(service.spec.ports.map((p) => [p.port, p.targetPort]),
                        [[5432, 'postgres']]);
       // Only core may connect, on that port.
       const policy = find(ha, 'NetworkPolicy', 'varan-postgres');
       assert.ok(matches(policy.spec.podSelector, labels));
       assert.deepEqual(policy.spec.policyTypes, ['Ingress']);
       assert.equal(policy.spec.ingress.length, 1);
       const coreLabels = coreWorkload(ha).spec.template.metadata.labels;
       const rule = policy.spec.ingress[0];
       assert.equal(rule.from.length, 1);
       assert.ok(!rule.from[0].namespaceSelector);
       assert.ok(matches(rule.from[0].podSelector, coreLabels));
       assert.deepEqual(rule.ports.map((p) => p.port), ['postgres']);
       // No other pod of the overlay matches core's selector there.
       for (const w of workloads(ha)) {
         if (w.metadata.name === 'varan-core') continue;
         assert.ok(!matches(rule.from[0].podSelector,
                            w.spec.template.metadata.labels),
                   w.metadata.name);
       }
     });

test('ha: the README\'s database URL reaches the bundled PostgreSQL', () => {
  const readme = fs.readFileSync(path.join(SOURCE_DIR, 'deploy/README.md'),
                                 'utf8');
  const at = readme.indexOf('## High availability (ha overlay)');
  assert.ok(at >= 0, 'the README has the section');
  const end = readme.indexOf('\n## ', at + 1);
  const section = readme.slice(at, end < 0 ? undefined : end);
  const url = /postgres:\/\/(\w+):[^@\s]*@([\w.-]+):(\d+)\/(\w+)\?/.exec(
      section);
  assert.ok(url, 'a postgres:// URL');
  const [, user, host, port, db] = url;
  const env = Object.fromEntries(
      container(podSpec(ha, 'StatefulSet', 'varan-postgres'), 'postgres')
          .env.map((e) => [e.name, e.value]));
  assert.equal(user, env.POSTGRES_USER);
  assert.equal(db, env.POSTGRES_DB);
  const service = find(ha, 'Service', 'varan-postgres');
  assert.ok([service.metadata.name,
             `${service.metadata.name}.${service.metadata.namespace}.svc`]
                .includes(host), host);
  assert.equal(Number(port), service.spec.ports[0].port);
});

test('the validation catches schema errors and unknown fields', () => {
  const sts = structuredClone(
      find(rendered.base, 'StatefulSet', 'varan-core'));
  assert.deepEqual(validate(sts), []);
  sts.spec.replicas = 'one';
  sts.spec.template.spec.containers[0].readinesProbe = {grpc: {port: 7700}};
  const problems = validate(sts);
  assert.ok(problems.some((p) => p.includes('replicas must be integer')),
            problems.join('\n'));
  assert.ok(problems.includes(
                'unknown field /spec/template/spec/containers/0/' +
                'readinesProbe'),
            problems.join('\n'));
  assert.deepEqual(validate({apiVersion: 'v1', kind: 'Nonsense',
                             metadata: {name: 'x'}}),
                   ['kubernetes-models has no schema for v1 Nonsense']);
});

// The Kubernetes manifests (deploy/kubernetes/): the base and every overlay,
// rendered, validate against the Kubernetes schemas (kubernetes-models,
// offline) and hold together: probes, Service, NetworkPolicy and
// PodDisruptionBudget point at the ports and pods that exist, and each
// overlay changes what it promises. Which flags the containers run with is
// proven by the smoke test (tests/integration/deploy_test.cc), which starts
// the real binaries with them.
'use strict';

const assert = require('node:assert/strict');
const {test} = require('node:test');
const {KUSTOMIZATIONS, renderKustomization, find, validate,
       projectVersion} = require('./k8s.js');

const rendered = Object.fromEntries(
    KUSTOMIZATIONS.map((k) => [k, renderKustomization(k)]));

function podSpec(objects, kind, name) {
  return find(objects, kind, name).spec.template.spec;
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

  test(`${k}: core is one StatefulSet replica on a volume claim`, () => {
    const sts = find(rendered[k], 'StatefulSet', 'varan-core');
    assert.equal(sts.spec.replicas, 1);
    assert.equal(sts.spec.serviceName, 'varan-core');
    const claims = sts.spec.volumeClaimTemplates.map((c) => c.metadata.name);
    const core = container(sts.spec.template.spec, 'core');
    const mounted = core.volumeMounts.map((m) => m.name);
    assert.ok(claims.every((c) => mounted.includes(c)), 'claims are mounted');
    // Its configuration comes from the ConfigMap, as a TOML file.
    const config = find(rendered[k], 'ConfigMap', 'varan-core');
    const volume = sts.spec.template.spec.volumes.find(
        (v) => v.configMap && v.configMap.name === 'varan-core');
    assert.ok(volume, 'the ConfigMap is a volume');
    const mount = core.volumeMounts.find((m) => m.name === volume.name);
    assert.ok(core.args.includes(`--config=${mount.mountPath}/core.toml`));
    assert.match(config.data['core.toml'], /^data-dir = "/m);
  });

  test(`${k}: core takes the join and admin tokens from Secrets`, () => {
    const spec = podSpec(rendered[k], 'StatefulSet', 'varan-core');
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

  test(`${k}: probes are native gRPC health checks on core's port`, () => {
    const spec = podSpec(rendered[k], 'StatefulSet', 'varan-core');
    const core = container(spec, 'core');
    const grpcPort = core.ports.find((p) => p.name === 'grpc').containerPort;
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
      assert.ok(core[probe], `core has a ${probe}`);
      assert.deepEqual(Object.keys(core[probe].grpc), ['port'],
                       `${probe} checks the server's overall health`);
      assert.equal(core[probe].grpc.port, grpcPort, probe);
    }
  });

  test(`${k}: the Service and NetworkPolicy lead to core's port`, () => {
    const objects = rendered[k];
    const spec = podSpec(objects, 'StatefulSet', 'varan-core');
    const labels = find(objects, 'StatefulSet', 'varan-core')
                       .spec.template.metadata.labels;
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

  test(`${k}: a PodDisruptionBudget covers core`, () => {
    const objects = rendered[k];
    const pdb = find(objects, 'PodDisruptionBudget', 'varan-core');
    const labels = find(objects, 'StatefulSet', 'varan-core')
                       .spec.template.metadata.labels;
    assert.ok(matches(pdb.spec.selector, labels));
    assert.equal(pdb.spec.minAvailable, 1);
    assert.equal(pdb.spec.unhealthyPodEvictionPolicy, 'AlwaysAllow');
  });

  test(`${k}: core runs non-root, read-only, without capabilities`, () => {
    const spec = podSpec(rendered[k], 'StatefulSet', 'varan-core');
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
    for (const [kind, name] of [['StatefulSet', 'varan-core'],
                                ['DaemonSet', 'varan-periphery']]) {
      const spec = podSpec(rendered[k], kind, name);
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
    assert.equal(container(podSpec(rendered[k], 'StatefulSet', 'varan-core'),
                           'core').image, `varan/core:${version}`);
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
         assert.equal(spec.initContainers.length, 1);
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

import kafkajs, { type AclEntry } from 'kafkajs';
import type { ExperimentConfig } from './config.js';
import { topicsOf } from './topics.js';

/**
 * The Kafka ACLs each role of an experiment needs, and no more: the one home of who may read and write what.
 * - `worker`: reads the input topic (in its group) and the snapshots; writes updates and dead letters, in
 *   transactions of its own.
 * - `server` (the parameter server): reads the updates (in its group) and the snapshots; writes snapshots and its
 *   dead letters, in transactions of its own.
 * - `reader` (`status`, `audit`, `evaluate`, `export`): reads the input and every namespace topic; sees the groups'
 *   committed offsets.
 * - `producer` (`simulate`, devices' bridges): writes the input topic.
 * - `admin` (`run`, `replay`, `scale`, granting): everything on the namespace's and the input's topics, groups and
 *   transactions, topic creation included.
 * Readers that read a topic without a group (snapshots, audits, replays) use groups named `streamgrad-direct-<uuid>`.
 */
export const roles = ['worker', 'server', 'reader', 'producer', 'ingest', 'admin'] as const;
export type Role = (typeof roles)[number];

/** The prefix of the throwaway groups of group-less readers (see `fromKafka` without `groupId`). */
export const directGroupPrefix = 'streamgrad-direct-';

/** One resource pattern and what a role may do on it. */
export interface RoleGrant {
  readonly resource: 'topic' | 'group' | 'transactional-id';
  readonly pattern: 'literal' | 'prefixed';
  readonly name: string;
  readonly operations: ReadonlyArray<'all' | 'read' | 'write' | 'describe'>;
  /** What the grant is for, for the printed table and the README. */
  readonly why: string;
}

/** The grants of `role` in `config`'s namespace. */
export function roleGrants(role: Role, config: Pick<ExperimentConfig, 'namespace' | 'inputTopic'>): RoleGrant[] {
  const topics = topicsOf(config.namespace);
  const ns = config.namespace;
  // Workers and servers check at start that every namespace topic exists: they see the ones they may describe.
  const namespaceTopics: RoleGrant = { resource: 'topic', pattern: 'prefixed', name: `${ns}.`, operations: ['describe'], why: 'sees that the namespace topics exist' };
  const direct: RoleGrant = { resource: 'group', pattern: 'prefixed', name: directGroupPrefix, operations: ['read', 'describe'], why: 'reads without a group (snapshots, bounded reads)' };
  switch (role) {
    case 'worker':
      return [
        { resource: 'topic', pattern: 'literal', name: config.inputTopic, operations: ['read', 'describe'], why: 'the training samples' },
        namespaceTopics,
        { resource: 'topic', pattern: 'literal', name: topics.model, operations: ['read'], why: 'the snapshots its replica follows' },
        { resource: 'topic', pattern: 'literal', name: topics.updates, operations: ['write'], why: 'its parameter updates' },
        { resource: 'topic', pattern: 'literal', name: topics.deadLetters, operations: ['write'], why: 'input records it cannot use' },
        { resource: 'group', pattern: 'literal', name: topics.workerGroup, operations: ['read', 'describe'], why: 'the workers\' group on the input topic' },
        direct,
        { resource: 'transactional-id', pattern: 'prefixed', name: `${topics.workerTransactions}.`, operations: ['write', 'describe'], why: 'one transaction per input partition (exactly-once)' },
      ];
    case 'server':
      return [
        namespaceTopics,
        { resource: 'topic', pattern: 'literal', name: topics.updates, operations: ['read'], why: 'the parameter updates it applies' },
        { resource: 'topic', pattern: 'literal', name: topics.model, operations: ['read', 'write'], why: 'the snapshots it publishes and restores from' },
        { resource: 'topic', pattern: 'literal', name: topics.serverDeadLetters, operations: ['write'], why: 'updates it refuses' },
        { resource: 'group', pattern: 'literal', name: topics.serverGroup, operations: ['read', 'describe'], why: 'the servers\' group on the updates topic' },
        direct,
        { resource: 'transactional-id', pattern: 'prefixed', name: `${topics.serverGroup}.`, operations: ['write', 'describe'], why: 'one transaction per shard (exactly-once)' },
      ];
    case 'reader':
      return [
        { resource: 'topic', pattern: 'literal', name: config.inputTopic, operations: ['read', 'describe'], why: 'the input, for audits and lag' },
        { resource: 'topic', pattern: 'prefixed', name: `${ns}.`, operations: ['read', 'describe'], why: 'updates, snapshots and dead letters' },
        { resource: 'group', pattern: 'prefixed', name: `${ns}.`, operations: ['describe'], why: 'the groups\' committed offsets' },
        direct,
      ];
    case 'producer':
      return [{ resource: 'topic', pattern: 'literal', name: config.inputTopic, operations: ['write', 'describe'], why: 'the training samples it writes' }];
    case 'ingest':
      return [
        { resource: 'topic', pattern: 'literal', name: config.inputTopic, operations: ['write', 'describe'], why: 'the samples it maps from MQTT messages' },
        namespaceTopics,
        { resource: 'topic', pattern: 'literal', name: topics.deadLetters, operations: ['write'], why: 'MQTT messages that do not map' },
        { resource: 'topic', pattern: 'literal', name: topics.reports, operations: ['write'], why: 'its figures, for dashboards' },
      ];
    case 'admin':
      return [
        { resource: 'topic', pattern: 'literal', name: config.inputTopic, operations: ['all'], why: 'creates and grows the input topic, and every role above' },
        { resource: 'topic', pattern: 'prefixed', name: `${ns}.`, operations: ['all'], why: 'creates the namespace topics' },
        { resource: 'group', pattern: 'prefixed', name: `${ns}.`, operations: ['all'], why: 'the workers\' and servers\' groups' },
        { ...direct, operations: ['all'] },
        { resource: 'transactional-id', pattern: 'prefixed', name: `${ns}.`, operations: ['all'], why: 'the workers\' and servers\' transactions' },
      ];
  }
}

// kafkajs is CommonJS, and Node's named-export detection misses its enums: take them off the default export.
const { AclOperationTypes, AclPermissionTypes, AclResourceTypes, ResourcePatternTypes } = kafkajs;
const resourceTypes = { topic: AclResourceTypes.TOPIC, group: AclResourceTypes.GROUP, 'transactional-id': AclResourceTypes.TRANSACTIONAL_ID } as const;
const patternTypes = { literal: ResourcePatternTypes.LITERAL, prefixed: ResourcePatternTypes.PREFIXED } as const;
const operationTypes = { all: AclOperationTypes.ALL, read: AclOperationTypes.READ, write: AclOperationTypes.WRITE, describe: AclOperationTypes.DESCRIBE } as const;

/** The grants as kafkajs ACL entries that allow `principal` (`User:name`) from any host. */
export function aclEntries(grants: readonly RoleGrant[], principal: string): AclEntry[] {
  return grants.flatMap((grant) =>
    grant.operations.map((operation) => ({
      resourceType: resourceTypes[grant.resource],
      resourceName: grant.name,
      resourcePatternType: patternTypes[grant.pattern],
      principal,
      host: '*',
      operation: operationTypes[operation],
      permissionType: AclPermissionTypes.ALLOW,
    })),
  );
}

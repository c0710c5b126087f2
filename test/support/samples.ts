import type { TrainingSample } from '../../schemas/types.js';

/** Sample `i` of a smooth 3-feature linear target (label = f0 − 2·f1 + 0.3), from device `deviceId`: what worker tests train on. */
export function linearSample(i: number, deviceId = 'd'): TrainingSample {
  const features = [Math.sin(i), Math.cos(i * 0.7), Math.sin(i * 0.3)].map(Math.fround);
  return { deviceId, eventTime: i, features, label: Math.fround(features[0]! - 2 * features[1]! + 0.3), labels: [], weight: 1, attributes: {} };
}

/** `node recommend --features SPEC` for a cold-start user: parsed exactly, every mistake named. */
import { parseFeatureSpec } from '../../../participant-node/serve/recommend';

describe('--features spec of a cold-start user', () => {
  test('key=value pairs, interests optional and |-separated', () => {
    expect(parseFeatureSpec('age_band=25-34, region=north,life_stage=student,interests=programming|design')).toEqual({ ageBand: '25-34', region: 'north', lifeStage: 'student', interests: ['programming', 'design'] });
    expect(parseFeatureSpec('region=south,life_stage=retired,age_band=65+')).toEqual({ ageBand: '65+', region: 'south', lifeStage: 'retired', interests: [] });
  });

  test.each([
    ['a key given twice (the last one used to win silently)', 'age_band=25-34,region=north,life_stage=student,age_band=35-44', /^--features gives age_band twice \("25-34" and "35-44"\); give each key once/],
    ['a missing key', 'age_band=25-34,region=north', /^--features is missing life_stage \(interests is optional\)$/],
    ['an unknown key', 'age_band=25-34,region=north,life_stage=student,income=high', /^--features has unknown key\(s\) income$/],
    ['not key=value', 'age_band=25-34,north', /^--features: expected key=value pairs separated by commas, got "north"$/],
  ])('refuses %s', (_name, spec, msg) => {
    expect(() => parseFeatureSpec(spec)).toThrow(msg);
  });
});
